// kubevalidate checks kmirror's deployment files offline, for scripts/deploy-check.sh.
//
//	kubevalidate manifests FILE...       strict decoding into the real Kubernetes and
//	                                     Prometheus Operator types, plus cross-checks
//	kubevalidate rules FILE              a PrometheusRule's spec as a Prometheus rule file
//	kubevalidate lint-rules --metrics metrics.rs RULES TESTS...
//	                                     alert policy and promtool test coverage
//
// `manifests` decodes every YAML document the way the API server's strict field validation
// does (sigs.k8s.io/json: unknown fields, duplicate fields and case-mismatched field names are
// errors), into k8s.io/api and prometheus-operator monitoring/v1 types; an unknown kind is an
// error. It then checks what the types cannot: names and labels, selectors that select what
// they should, named ports and volumes that exist, and for every container that runs
// `kmirror run`: its flags, the probes on the metrics port, the grace period above the shutdown
// timeout, a non-root read-only container, and that every Secret the kmirror config names is
// mounted at <secrets-dir>/<secretName>. Exit status 1 on any problem.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "manifests":
		err = manifestsCmd(os.Args[2:])
	case "rules":
		err = rulesCmd(os.Args[2:])
	case "lint-rules":
		err = lintRulesCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubevalidate:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kubevalidate manifests FILE... | rules FILE | lint-rules --metrics METRICS_RS RULES TESTS...")
	os.Exit(2)
}

// ---------------------------------------------------------------------------------------------
// Documents

type doc struct {
	file string
	idx  int // document number in the file, from 1
	kind string
	name string
	obj  any
	raw  map[string]any
}

func (d *doc) String() string {
	return fmt.Sprintf("%s#%d %s/%s", d.file, d.idx, d.kind, d.name)
}

// splitDocs splits a YAML stream on `---` lines and drops documents that hold only comments.
func splitDocs(data []byte) [][]byte {
	var out [][]byte
	var cur bytes.Buffer
	flush := func() {
		content := false
		for _, l := range strings.Split(cur.String(), "\n") {
			t := strings.TrimSpace(l)
			if t != "" && !strings.HasPrefix(t, "#") {
				content = true
				break
			}
		}
		if content {
			out = append(out, append([]byte(nil), cur.Bytes()...))
		}
		cur.Reset()
	}
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if strings.TrimRight(l, " \r\n") == "---" || strings.HasPrefix(l, "--- ") {
			flush()
			continue
		}
		cur.WriteString(l)
	}
	flush()
	return out
}

// newObject returns an empty typed object for apiVersion/kind.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, nil
	case "monitoring.coreos.com/v1 PodMonitor":
		return &monitoringv1.PodMonitor{}, nil
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}, nil
	}
	return nil, fmt.Errorf("unknown apiVersion/kind %q %q (kubevalidate knows core v1, apps/v1, policy/v1 and monitoring.coreos.com/v1 kinds)", apiVersion, kind)
}

// strictDecode decodes one YAML document as the API server's strict field validation does.
func strictDecode(y []byte, into any) error {
	j, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return fmt.Errorf("YAML: %w", err)
	}
	strict, err := sigsjson.UnmarshalStrict(j, into, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

func readDocs(files []string) ([]*doc, []string) {
	var docs []*doc
	var problems []string
	for _, f := range files {
		var data []byte
		var err error
		if f == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for i, y := range splitDocs(data) {
			d := &doc{file: f, idx: i + 1}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(y, &head); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", d, err))
				continue
			}
			d.kind, d.name = head.Kind, head.Metadata.Name
			obj, err := newObject(head.APIVersion, head.Kind)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", d, err))
				continue
			}
			if err := strictDecode(y, obj); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", d, err))
				continue
			}
			if err := yaml.Unmarshal(y, &d.raw); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", d, err))
				continue
			}
			d.obj = obj
			docs = append(docs, d)
		}
	}
	return docs, problems
}

// ---------------------------------------------------------------------------------------------
// manifests

type checker struct {
	docs     []*doc
	problems []string
}

func (c *checker) fail(d *doc, format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf("%s: %s", d, fmt.Sprintf(format, args...)))
}

func manifestsCmd(args []string) error {
	if len(args) == 0 {
		return errors.New("manifests: no file given")
	}
	docs, problems := readDocs(args)
	c := &checker{docs: docs, problems: problems}
	for _, d := range docs {
		before := len(c.problems)
		c.checkMeta(d)
		switch o := d.obj.(type) {
		case *corev1.ConfigMap:
			for k := range o.Data {
				for _, m := range validation.IsConfigMapKey(k) {
					c.fail(d, "data key %q: %s", k, m)
				}
			}
		case *corev1.Service:
			c.checkService(d, o)
		case *appsv1.Deployment:
			c.checkWorkload(d, o.Spec.Selector, &o.Spec.Template)
			if o.Spec.Replicas != nil && *o.Spec.Replicas > 1 && isKmirror(&o.Spec.Template.Spec) {
				c.checkScaleOut(d, *o.Spec.Replicas, o)
			}
		case *appsv1.StatefulSet:
			c.checkWorkload(d, o.Spec.Selector, &o.Spec.Template)
		case *policyv1.PodDisruptionBudget:
			c.checkPDB(d, o)
		case *monitoringv1.ServiceMonitor:
			c.checkServiceMonitor(d, o)
		case *monitoringv1.PodMonitor:
			c.checkPodMonitor(d, o)
		case *monitoringv1.PrometheusRule:
			c.checkPrometheusRule(d, o)
		}
		if len(c.problems) == before {
			fmt.Printf("  ok %s\n", d)
		}
	}
	if len(docs) == 0 && len(c.problems) == 0 {
		c.problems = append(c.problems, "no Kubernetes object found in "+strings.Join(args, " "))
	}
	if len(c.problems) > 0 {
		for _, p := range c.problems {
			fmt.Fprintln(os.Stderr, "  FAIL", p)
		}
		return fmt.Errorf("%d problem(s)", len(c.problems))
	}
	return nil
}

func (c *checker) checkMeta(d *doc) {
	m := objectMeta(d.obj)
	if m == nil {
		return
	}
	if m.Name == "" {
		c.fail(d, "metadata.name is empty")
	} else {
		var msgs []string
		if d.kind == "Service" {
			msgs = validation.IsDNS1035Label(m.Name)
		} else {
			msgs = validation.IsDNS1123Subdomain(m.Name)
		}
		for _, msg := range msgs {
			c.fail(d, "metadata.name %q: %s", m.Name, msg)
		}
	}
	c.checkLabels(d, "metadata.labels", m.Labels)
	for k := range m.Annotations {
		for _, msg := range validation.IsQualifiedName(strings.ToLower(k)) {
			c.fail(d, "annotation key %q: %s", k, msg)
		}
	}
}

func (c *checker) checkLabels(d *doc, where string, l map[string]string) {
	for k, v := range l {
		for _, msg := range validation.IsQualifiedName(k) {
			c.fail(d, "%s key %q: %s", where, k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			c.fail(d, "%s %s=%q: %s", where, k, v, msg)
		}
	}
}

func objectMeta(o any) *metav1.ObjectMeta {
	switch o := o.(type) {
	case *corev1.ConfigMap:
		return &o.ObjectMeta
	case *corev1.Secret:
		return &o.ObjectMeta
	case *corev1.Service:
		return &o.ObjectMeta
	case *corev1.ServiceAccount:
		return &o.ObjectMeta
	case *appsv1.Deployment:
		return &o.ObjectMeta
	case *appsv1.StatefulSet:
		return &o.ObjectMeta
	case *policyv1.PodDisruptionBudget:
		return &o.ObjectMeta
	case *monitoringv1.ServiceMonitor:
		return &o.ObjectMeta
	case *monitoringv1.PodMonitor:
		return &o.ObjectMeta
	case *monitoringv1.PrometheusRule:
		return &o.ObjectMeta
	}
	return nil
}

// selector converts a label selector, reporting an invalid one.
func (c *checker) selector(d *doc, where string, s *metav1.LabelSelector) labels.Selector {
	if s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0) {
		c.fail(d, "%s is empty (it would select everything)", where)
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		c.fail(d, "%s: %v", where, err)
		return nil
	}
	return sel
}

type podTemplate struct {
	d    *doc
	tmpl *corev1.PodTemplateSpec
}

func (c *checker) podTemplates() []podTemplate {
	var out []podTemplate
	for _, d := range c.docs {
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			out = append(out, podTemplate{d, &o.Spec.Template})
		case *appsv1.StatefulSet:
			out = append(out, podTemplate{d, &o.Spec.Template})
		}
	}
	return out
}

func (c *checker) services() []*corev1.Service {
	var out []*corev1.Service
	for _, d := range c.docs {
		if s, ok := d.obj.(*corev1.Service); ok {
			out = append(out, s)
		}
	}
	return out
}

func (c *checker) configMap(name string) *corev1.ConfigMap {
	for _, d := range c.docs {
		if cm, ok := d.obj.(*corev1.ConfigMap); ok && cm.Name == name {
			return cm
		}
	}
	return nil
}

func containerPort(spec *corev1.PodSpec, name string) *corev1.ContainerPort {
	for i := range spec.Containers {
		for j := range spec.Containers[i].Ports {
			if spec.Containers[i].Ports[j].Name == name {
				return &spec.Containers[i].Ports[j]
			}
		}
	}
	return nil
}

func (c *checker) checkService(d *doc, s *corev1.Service) {
	if len(s.Spec.Ports) == 0 {
		c.fail(d, "spec.ports is empty")
	}
	for _, p := range s.Spec.Ports {
		if p.Name != "" {
			for _, m := range validation.IsValidPortName(p.Name) {
				c.fail(d, "port name %q: %s", p.Name, m)
			}
		}
	}
	if len(s.Spec.Selector) == 0 {
		return
	}
	sel := labels.SelectorFromSet(s.Spec.Selector)
	found := false
	for _, t := range c.podTemplates() {
		if !sel.Matches(labels.Set(t.tmpl.Labels)) {
			continue
		}
		found = true
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type == 1 && containerPort(&t.tmpl.Spec, p.TargetPort.StrVal) == nil {
				c.fail(d, "targetPort %q is not a port of %s's containers", p.TargetPort.StrVal, t.d)
			}
		}
	}
	if !found {
		c.fail(d, "selector %v selects no pod template in these files", s.Spec.Selector)
	}
}

func (c *checker) checkPDB(d *doc, p *policyv1.PodDisruptionBudget) {
	if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
		c.fail(d, "set exactly one of minAvailable and maxUnavailable")
	}
	sel := c.selector(d, "spec.selector", p.Spec.Selector)
	if sel == nil {
		return
	}
	for _, t := range c.podTemplates() {
		if sel.Matches(labels.Set(t.tmpl.Labels)) {
			return
		}
	}
	c.fail(d, "spec.selector selects no pod template in these files")
}

func (c *checker) checkServiceMonitor(d *doc, m *monitoringv1.ServiceMonitor) {
	if len(m.Spec.Endpoints) == 0 {
		c.fail(d, "spec.endpoints is empty")
	}
	sel := c.selector(d, "spec.selector", &m.Spec.Selector)
	if sel == nil {
		return
	}
	found := false
	for _, s := range c.services() {
		if !sel.Matches(labels.Set(s.Labels)) {
			continue
		}
		found = true
		for _, e := range m.Spec.Endpoints {
			ok := false
			for _, p := range s.Spec.Ports {
				if e.Port == p.Name {
					ok = true
				}
			}
			if !ok {
				c.fail(d, "endpoint port %q is not a port of Service %s", e.Port, s.Name)
			}
		}
	}
	if !found {
		c.fail(d, "spec.selector selects no Service in these files (a ServiceMonitor selects Services by their labels)")
	}
}

func (c *checker) checkPodMonitor(d *doc, m *monitoringv1.PodMonitor) {
	if len(m.Spec.PodMetricsEndpoints) == 0 {
		c.fail(d, "spec.podMetricsEndpoints is empty")
	}
	sel := c.selector(d, "spec.selector", &m.Spec.Selector)
	if sel == nil {
		return
	}
	found := false
	for _, t := range c.podTemplates() {
		if !sel.Matches(labels.Set(t.tmpl.Labels)) {
			continue
		}
		found = true
		for _, e := range m.Spec.PodMetricsEndpoints {
			if e.Port == nil || containerPort(&t.tmpl.Spec, *e.Port) == nil {
				c.fail(d, "podMetricsEndpoints port is not a named port of %s's containers", t.d)
			}
		}
	}
	if !found {
		c.fail(d, "spec.selector selects no pod template in these files")
	}
}

func (c *checker) checkPrometheusRule(d *doc, r *monitoringv1.PrometheusRule) {
	if len(r.Spec.Groups) == 0 {
		c.fail(d, "spec.groups is empty")
	}
	for _, g := range r.Spec.Groups {
		if len(g.Rules) == 0 {
			c.fail(d, "group %q has no rule", g.Name)
		}
		for _, rule := range g.Rules {
			if (rule.Alert == "") == (rule.Record == "") {
				c.fail(d, "group %q: a rule needs exactly one of alert and record", g.Name)
			}
			if rule.Expr.String() == "" {
				c.fail(d, "group %q rule %q: empty expr", g.Name, rule.Alert+rule.Record)
			}
		}
	}
}

func (c *checker) checkWorkload(d *doc, s *metav1.LabelSelector, t *corev1.PodTemplateSpec) {
	sel := c.selector(d, "spec.selector", s)
	if sel != nil && !sel.Matches(labels.Set(t.Labels)) {
		c.fail(d, "spec.selector does not match the pod template's labels")
	}
	c.checkLabels(d, "spec.template.metadata.labels", t.Labels)
	spec := &t.Spec
	if len(spec.Containers) == 0 {
		c.fail(d, "no container")
	}
	volumes := map[string]*corev1.Volume{}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		for _, m := range validation.IsDNS1123Label(v.Name) {
			c.fail(d, "volume name %q: %s", v.Name, m)
		}
		if volumes[v.Name] != nil {
			c.fail(d, "volume %q defined twice", v.Name)
		}
		volumes[v.Name] = v
		if v.Secret != nil && v.Secret.SecretName == "" {
			c.fail(d, "volume %q: secret without secretName", v.Name)
		}
		if v.ConfigMap != nil && v.ConfigMap.Name == "" {
			c.fail(d, "volume %q: configMap without name", v.Name)
		}
	}
	names := map[string]bool{}
	for i := range spec.Containers {
		ct := &spec.Containers[i]
		for _, m := range validation.IsDNS1123Label(ct.Name) {
			c.fail(d, "container name %q: %s", ct.Name, m)
		}
		if names[ct.Name] {
			c.fail(d, "container %q defined twice", ct.Name)
		}
		names[ct.Name] = true
		if ct.Image == "" {
			c.fail(d, "container %q has no image", ct.Name)
		}
		ports := map[string]bool{}
		for _, p := range ct.Ports {
			if p.Name == "" {
				continue
			}
			for _, m := range validation.IsValidPortName(p.Name) {
				c.fail(d, "container %q port name %q: %s", ct.Name, p.Name, m)
			}
			if ports[p.Name] {
				c.fail(d, "container %q: port name %q used twice", ct.Name, p.Name)
			}
			ports[p.Name] = true
		}
		for _, probe := range []*corev1.Probe{ct.LivenessProbe, ct.ReadinessProbe, ct.StartupProbe} {
			if probe != nil && probe.HTTPGet != nil && probe.HTTPGet.Port.Type == 1 && !ports[probe.HTTPGet.Port.StrVal] {
				c.fail(d, "container %q: probe port %q is not one of its ports", ct.Name, probe.HTTPGet.Port.StrVal)
			}
		}
		paths := map[string]bool{}
		for _, m := range ct.VolumeMounts {
			if volumes[m.Name] == nil {
				c.fail(d, "container %q mounts volume %q, which is not defined", ct.Name, m.Name)
			}
			if paths[m.MountPath] {
				c.fail(d, "container %q: two mounts at %s", ct.Name, m.MountPath)
			}
			paths[m.MountPath] = true
		}
		if isKmirrorContainer(ct) {
			c.checkKmirror(d, spec, ct, volumes)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// kmirror's container

// runFlags are `kmirror run`'s options (crates/kmirror/src/main.rs, `Cmd::Run` and
// `ConfigArgs`), each with whether it takes a value.
var runFlags = map[string]bool{
	"--config": true, "-c": true, "--secrets-dir": true, "--metrics-addr": true,
	"--shutdown-timeout": true, "--stall-after": true, "--log-format": true, "--memory": true,
	"--help": false, "-h": false,
}

func isKmirrorContainer(ct *corev1.Container) bool {
	args := append(append([]string{}, ct.Command...), ct.Args...)
	for i, a := range args {
		if a == "run" {
			return i == 0 || strings.HasSuffix(args[i-1], "kmirror")
		}
	}
	return false
}

// scaleOutOn matches a kmirror configuration that turns scale-out on: the Strimzi resource's
// spec.replicas above 1, or scale.out.enabled: true in a mirror's config.
var scaleOutOn = regexp.MustCompile(`scale\.out\.enabled: *"?true|(?m)^ *replicas: *"?([2-9]|[1-9][0-9]+)`)

// checkScaleOut: several kmirror replicas copy every record once each unless the configuration
// they mount (a ConfigMap among the documents) turns scale-out on; and their update strategy
// must not be Recreate (an upgrade would stop every replica at once).
func (c *checker) checkScaleOut(d *doc, replicas int32, o *appsv1.Deployment) {
	if o.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		c.fail(d, "replicas %d with the Recreate strategy: an upgrade stops every replica at once; use RollingUpdate (scale-out hands partitions over)", replicas)
	}
	for _, v := range o.Spec.Template.Spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		for _, other := range c.docs {
			cm, ok := other.obj.(*corev1.ConfigMap)
			if !ok || cm.Name != v.ConfigMap.Name {
				continue
			}
			for _, text := range cm.Data {
				if scaleOutOn.MatchString(text) {
					return
				}
			}
		}
	}
	c.fail(d, "replicas %d: no mounted configuration turns scale-out on (spec.replicas above 1, or scale.out.enabled: true): every replica would copy every record", replicas)
}

func isKmirror(spec *corev1.PodSpec) bool {
	for i := range spec.Containers {
		if isKmirrorContainer(&spec.Containers[i]) {
			return true
		}
	}
	return false
}

// parseDuration parses a duration the way kmirror does: digits and ms, s (the default) or m.
func parseDuration(s string) (float64, error) {
	m := regexp.MustCompile(`^([0-9]+)(ms|s|m)?$`).FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a kmirror duration (digits and ms, s or m)", s)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "ms":
		return n / 1000, nil
	case "m":
		return n * 60, nil
	}
	return n, nil
}

// parseSize parses a size the way kmirror's --memory does: digits and B, KiB, MiB, GiB, KB,
// kB, MB or GB (bytes without a unit).
func parseSize(s string) (int64, error) {
	m := regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|KB|kB|MB|GB)?$`).FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a kmirror size (e.g. 64MiB, 100MB)", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	unit := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 1000, "kB": 1000, "MB": 1000000, "GB": 1000000000}[m[2]]
	return n * unit, nil
}

// kmirrorOverhead is what the process needs beside its --memory budget (librdkafka's threads
// and buffers, metrics, the runtime): the README says 30 to 50 MB.
const kmirrorOverhead = 50 << 20

func (c *checker) checkKmirror(d *doc, spec *corev1.PodSpec, ct *corev1.Container, volumes map[string]*corev1.Volume) {
	args := append(append([]string{}, ct.Command...), ct.Args...)
	for len(args) > 0 && args[0] != "run" {
		args = args[1:]
	}
	flags := map[string]string{}
	for i := 1; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(a, "=")
		takes, known := runFlags[name]
		if !known {
			c.fail(d, "container %q: %q is not a `kmirror run` option", ct.Name, a)
			continue
		}
		if takes && !hasValue {
			if i+1 >= len(args) {
				c.fail(d, "container %q: %s needs a value", ct.Name, name)
				break
			}
			i++
			value = args[i]
		}
		if name == "-c" {
			name = "--config"
		}
		flags[name] = value
	}
	cfgPath := flags["--config"]
	if cfgPath == "" {
		c.fail(d, "container %q: kmirror run without --config", ct.Name)
	}
	shutdown := 30.0
	if v, ok := flags["--shutdown-timeout"]; ok {
		s, err := parseDuration(v)
		if err != nil {
			c.fail(d, "container %q: --shutdown-timeout: %v", ct.Name, err)
		}
		shutdown = s
	}
	if v, ok := flags["--stall-after"]; ok {
		if _, err := parseDuration(v); err != nil {
			c.fail(d, "container %q: --stall-after: %v", ct.Name, err)
		}
	}
	budget := int64(64 << 20)
	if v, ok := flags["--memory"]; ok {
		b, err := parseSize(v)
		if err != nil {
			c.fail(d, "container %q: --memory: %v", ct.Name, err)
		} else if b < 8<<20 {
			c.fail(d, "container %q: --memory %s is below kmirror's smallest budget, 8MiB", ct.Name, v)
		}
		budget = b
	}
	if limit, ok := ct.Resources.Limits[corev1.ResourceMemory]; ok && limit.Value() < budget+kmirrorOverhead {
		c.fail(d, "container %q: memory limit %s leaves less than 50 MB beside --memory (%d MiB): the container would be killed under load", ct.Name, limit.String(), budget>>20)
	}
	if v, ok := flags["--log-format"]; ok && v != "text" && v != "json" {
		c.fail(d, "container %q: --log-format %q: text or json", ct.Name, v)
	}
	grace := 30.0
	if spec.TerminationGracePeriodSeconds != nil {
		grace = float64(*spec.TerminationGracePeriodSeconds)
	}
	if grace <= shutdown {
		c.fail(d, "terminationGracePeriodSeconds %v is not above --shutdown-timeout (%vs): the kubelet would kill kmirror before it stored its progress", grace, shutdown)
	}
	// Metrics address, port and probes.
	if addr, ok := flags["--metrics-addr"]; !ok {
		c.fail(d, "container %q: no --metrics-addr, so no /metrics, /healthz or /readyz", ct.Name)
	} else {
		_, port, found := strings.Cut(addr[strings.LastIndex(addr, "]")+1:], ":")
		p, err := strconv.Atoi(port)
		if !found || err != nil {
			c.fail(d, "container %q: --metrics-addr %q is not HOST:PORT", ct.Name, addr)
		}
		if strings.HasPrefix(addr, "127.") || strings.HasPrefix(addr, "localhost") || strings.HasPrefix(addr, "[::1]") {
			c.fail(d, "container %q: --metrics-addr %q listens on loopback only: probes and Prometheus cannot reach it", ct.Name, addr)
		}
		var named *corev1.ContainerPort
		for i := range ct.Ports {
			if int(ct.Ports[i].ContainerPort) == p {
				named = &ct.Ports[i]
			}
		}
		if named == nil || named.Name == "" {
			c.fail(d, "container %q: no named container port %d for --metrics-addr", ct.Name, p)
		}
		for _, pr := range []struct {
			probe *corev1.Probe
			kind  string
			path  string
		}{{ct.LivenessProbe, "livenessProbe", "/healthz"}, {ct.ReadinessProbe, "readinessProbe", "/readyz"}} {
			switch {
			case pr.probe == nil || pr.probe.HTTPGet == nil:
				c.fail(d, "container %q: no HTTP %s (%s)", ct.Name, pr.kind, pr.path)
			case pr.probe.HTTPGet.Path != pr.path:
				c.fail(d, "container %q: %s path %q, kmirror serves %s", ct.Name, pr.kind, pr.probe.HTTPGet.Path, pr.path)
			case named != nil && pr.probe.HTTPGet.Port.String() != named.Name && pr.probe.HTTPGet.Port.IntValue() != p:
				c.fail(d, "container %q: %s is not on the metrics port", ct.Name, pr.kind)
			}
		}
	}
	// Security context.
	sc, psc := ct.SecurityContext, spec.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.fail(d, "container %q: readOnlyRootFilesystem is not true", ct.Name)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.fail(d, "container %q: allowPrivilegeEscalation is not false", ct.Name)
	}
	nonRoot := (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
	if !nonRoot {
		c.fail(d, "container %q: runAsNonRoot is not true", ct.Name)
	}
	// The configuration and the Secrets it names.
	if cfgPath == "" {
		return
	}
	mountOf := func(path string) *corev1.VolumeMount {
		var best *corev1.VolumeMount
		for i := range ct.VolumeMounts {
			m := &ct.VolumeMounts[i]
			if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
				if best == nil || len(m.MountPath) > len(best.MountPath) {
					best = m
				}
			}
		}
		return best
	}
	m := mountOf(cfgPath)
	if m == nil {
		c.fail(d, "container %q: --config %s is not on any mounted volume", ct.Name, cfgPath)
		return
	}
	v := volumes[m.Name]
	if v == nil || v.ConfigMap == nil {
		return // already reported, or not a ConfigMap: nothing more to check here
	}
	// Which key of the ConfigMap is the file?
	key := ""
	if m.MountPath == cfgPath {
		key = m.SubPath
		if key == "" {
			c.fail(d, "container %q: --config %s is a whole ConfigMap volume, not a file", ct.Name, cfgPath)
			return
		}
	} else {
		rel := strings.TrimPrefix(cfgPath, strings.TrimSuffix(m.MountPath, "/")+"/")
		key = rel
		if len(v.ConfigMap.Items) > 0 {
			key = ""
			for _, it := range v.ConfigMap.Items {
				if it.Path == rel {
					key = it.Key
				}
			}
			if key == "" {
				c.fail(d, "container %q: --config %s: no item of ConfigMap volume %q has path %q", ct.Name, cfgPath, v.Name, rel)
				return
			}
		}
	}
	cm := c.configMap(v.ConfigMap.Name)
	if cm == nil {
		fmt.Printf("  note %s: ConfigMap %q is not in these files (an existing one): its Secrets are not cross-checked\n", d, v.ConfigMap.Name)
		return
	}
	text, ok := cm.Data[key]
	if !ok {
		c.fail(d, "container %q: ConfigMap %s has no key %q for --config", ct.Name, cm.Name, key)
		return
	}
	var cfg any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		c.fail(d, "ConfigMap %s key %s is not YAML: %v", cm.Name, key, err)
		return
	}
	c.checkKmirrorConfigShape(d, cm.Name+" key "+key, cfg)
	secrets := map[string]bool{}
	collectSecretNames(cfg, secrets)
	if len(secrets) == 0 {
		return
	}
	dir := flags["--secrets-dir"]
	if dir == "" {
		c.fail(d, "container %q: the config names Secrets but kmirror runs without --secrets-dir", ct.Name)
		return
	}
	for _, name := range sortedKeys(secrets) {
		want := strings.TrimSuffix(dir, "/") + "/" + name
		ok := false
		for _, vm := range ct.VolumeMounts {
			vol := volumes[vm.Name]
			if strings.TrimSuffix(vm.MountPath, "/") == want && vm.SubPath == "" && vol != nil && vol.Secret != nil && vol.Secret.SecretName == name {
				ok = true
			}
		}
		if !ok {
			c.fail(d, "container %q: the config names Secret %q, which is not mounted (whole, without subPath) at %s", ct.Name, name, want)
		}
	}
}

// checkKmirrorConfigShape checks the outline of a kmirror configuration: a whole
// KafkaMirrorMaker2 resource (apiVersion, kind, metadata, spec, status), or a document shaped
// like its spec, not a mix of both (kmirror rejects unknown keys).
func (c *checker) checkKmirrorConfigShape(d *doc, where string, cfg any) {
	m, ok := cfg.(map[string]any)
	if !ok {
		c.fail(d, "%s: kmirror's configuration is not a YAML mapping", where)
		return
	}
	resource := map[string]bool{"apiVersion": true, "kind": true, "metadata": true, "spec": true, "status": true}
	if m["spec"] != nil || m["kind"] != nil {
		if m["kind"] != "KafkaMirrorMaker2" {
			c.fail(d, "%s: kind %v, want KafkaMirrorMaker2", where, m["kind"])
		}
		for _, k := range sortedKeys(m) {
			if !resource[k] {
				c.fail(d, "%s: key %q beside a resource's spec (a KafkaMirrorMaker2 resource has apiVersion, kind, metadata, spec and status)", where, k)
			}
		}
		spec, _ := m["spec"].(map[string]any)
		if spec == nil || spec["clusters"] == nil {
			c.fail(d, "%s: spec.clusters is missing", where)
		}
		return
	}
	for _, k := range sortedKeys(m) {
		if resource[k] {
			c.fail(d, "%s: key %q in a spec-shaped configuration (no spec: found)", where, k)
		}
	}
	if m["clusters"] == nil || m["mirrors"] == nil {
		c.fail(d, "%s: neither a KafkaMirrorMaker2 resource nor its spec (clusters and mirrors missing)", where)
	}
}

// collectSecretNames finds every `secretName` value in a parsed configuration.
func collectSecretNames(v any, into map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "secretName" {
				into[s] = true
			}
			collectSecretNames(x, into)
		}
	case []any:
		for _, x := range v {
			collectSecretNames(x, into)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------------------------------------
// rules: a PrometheusRule's spec, as a Prometheus rule file

func rulesCmd(args []string) error {
	if len(args) != 1 {
		return errors.New("rules: give one file")
	}
	docs, problems := readDocs(args)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	var specs []any
	for _, d := range docs {
		if _, ok := d.obj.(*monitoringv1.PrometheusRule); ok {
			specs = append(specs, d.raw["spec"])
		}
	}
	if len(specs) != 1 {
		return fmt.Errorf("rules: %s holds %d PrometheusRules, want 1", args[0], len(specs))
	}
	out, err := yaml.Marshal(specs[0])
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

// ---------------------------------------------------------------------------------------------
// lint-rules: every alert's shape, the metrics it uses, and its unit tests

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

type testFile struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func lintRulesCmd(args []string) error {
	if len(args) < 4 || args[0] != "--metrics" {
		return errors.New("lint-rules: --metrics METRICS_RS RULES TESTS...")
	}
	metricsSrc, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	exported := map[string]bool{"up": true}
	for _, m := range regexp.MustCompile(`"(kmirror_[a-z0-9_]+|kafka_connect_mirror_[a-z0-9_]+)"`).FindAllStringSubmatch(string(metricsSrc), -1) {
		exported[m[1]] = true
	}
	if len(exported) < 10 {
		return fmt.Errorf("lint-rules: found only %d metric names in %s", len(exported), args[1])
	}
	rulesPath := args[2]
	data, err := os.ReadFile(rulesPath)
	if err != nil {
		return err
	}
	var rf ruleFile
	if err := strictDecode(data, &rf); err != nil {
		return fmt.Errorf("%s: %w", rulesPath, err)
	}
	var problems []string
	alerts := map[string]bool{}
	metricRe := regexp.MustCompile(`\b(kmirror_[a-z0-9_]+|kafka_connect_mirror_[a-z0-9_]+)\b`)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			if r.For == "" {
				problems = append(problems, r.Alert+": no `for:`")
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				problems = append(problems, r.Alert+": severity label must be critical, warning or info")
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					problems = append(problems, r.Alert+": no "+a+" annotation")
				}
			}
			for _, m := range metricRe.FindAllString(r.Expr, -1) {
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if strings.HasSuffix(m, suffix) && exported[strings.TrimSuffix(m, suffix)] {
						base = strings.TrimSuffix(m, suffix)
					}
				}
				if !exported[base] {
					problems = append(problems, fmt.Sprintf("%s: uses %s, which kmirror does not export (%s)", r.Alert, m, args[1]))
				}
			}
		}
	}
	fires, quiet := map[string]int{}, map[string]int{}
	absRules, _ := filepath.Abs(rulesPath)
	for _, tf := range args[3:] {
		data, err := os.ReadFile(tf)
		if err != nil {
			return err
		}
		var t testFile
		if err := yaml.Unmarshal(data, &t); err != nil {
			return fmt.Errorf("%s: %w", tf, err)
		}
		uses := false
		for _, rfp := range t.RuleFiles {
			p, _ := filepath.Abs(filepath.Join(filepath.Dir(tf), rfp))
			if p == absRules {
				uses = true
			}
		}
		if !uses {
			problems = append(problems, fmt.Sprintf("%s: rule_files does not name %s", tf, rulesPath))
		}
		for _, tc := range t.Tests {
			for _, a := range tc.AlertRuleTest {
				if !alerts[a.Alertname] {
					problems = append(problems, fmt.Sprintf("%s: test %q checks unknown alert %s", tf, tc.Name, a.Alertname))
				}
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname]++
				} else {
					quiet[a.Alertname]++
				}
			}
		}
	}
	for _, a := range sortedKeys(alerts) {
		if fires[a] == 0 {
			problems = append(problems, a+": no test case where it fires")
		}
		if quiet[a] == 0 {
			problems = append(problems, a+": no test case where it does not fire")
		}
		if fires[a] > 0 && quiet[a] > 0 {
			fmt.Printf("  ok %s: %d firing and %d quiet test case(s)\n", a, fires[a], quiet[a])
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "  FAIL", p)
		}
		return fmt.Errorf("%d problem(s)", len(problems))
	}
	return nil
}

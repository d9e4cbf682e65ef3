// Reads what kmirror wrote with MirrorMaker 2's own client classes. Compiled and run by the
// end-to-end tests (tests/e2e/java_interop.rs) against the Kafka jars of the test bed.
//
//   KmirrorInterop translate BOOTSTRAP POLICY_CLASS REMOTE_ALIAS GROUP
//       RemoteClusterUtils.translateOffsets: one line "translated TOPIC PARTITION OFFSET" each.
//   KmirrorInterop client BOOTSTRAP POLICY_CLASS
//       MirrorClient: "heartbeats TOPIC", "checkpoints TOPIC" and "remote TOPIC" lines.

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.mirror.MirrorClient;
import org.apache.kafka.connect.mirror.RemoteClusterUtils;

public class KmirrorInterop {
    public static void main(String[] args) throws Exception {
        Map<String, Object> props = new HashMap<>();
        props.put("bootstrap.servers", args[1]);
        props.put("replication.policy.class", args[2]);
        List<String> out = new ArrayList<>();
        switch (args[0]) {
            case "translate": {
                Map<TopicPartition, OffsetAndMetadata> translated =
                    RemoteClusterUtils.translateOffsets(props, args[3], args[4], Duration.ofSeconds(30));
                for (Map.Entry<TopicPartition, OffsetAndMetadata> e : translated.entrySet()) {
                    out.add("translated " + e.getKey().topic() + " " + e.getKey().partition() + " "
                        + e.getValue().offset());
                }
                break;
            }
            case "client": {
                try (MirrorClient client = new MirrorClient(props)) {
                    for (String t : new TreeSet<>(client.heartbeatTopics())) out.add("heartbeats " + t);
                    for (String t : new TreeSet<>(client.checkpointTopics())) out.add("checkpoints " + t);
                    for (String t : new TreeSet<>(client.remoteTopics())) out.add("remote " + t);
                }
                break;
            }
            default:
                throw new IllegalArgumentException("unknown command " + args[0]);
        }
        out.sort(null);
        for (String line : out) System.out.println(line);
    }
}

#!/usr/bin/env bash
# Resolves Apache Kafka (broker, tools) and MirrorMaker 2 from Maven Central into a cache folder
# outside the repository and prints that folder: run them with `java -cp 'DIR/libs/*' CLASS`.
#
#   scripts/kafka.sh [VERSION]     default: $KMIRROR_KAFKA_VERSION, else 4.1.1
#
# The cache is $KMIRROR_KAFKA_CACHE (default ~/.cache/kmirror/kafka)/VERSION; a finished folder
# is reused as it is. Needs Java 17 and Maven (.ci/run installs them). Progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=${1:-${KMIRROR_KAFKA_VERSION:-4.1.1}}
case "$version" in
  [0-9]*.[0-9]*.[0-9]*) ;;
  *) echo "scripts/kafka.sh: '$version' is not a Kafka version (e.g. 4.1.1 or 3.9.1)" >&2; exit 2 ;;
esac
cache=${KMIRROR_KAFKA_CACHE:-$HOME/.cache/kmirror/kafka}
dir="$cache/$version"
if [ -f "$dir/.complete" ]; then
  echo "$dir"
  exit 0
fi
for tool in java mvn; do
  command -v "$tool" >/dev/null || { echo "scripts/kafka.sh: $tool is missing (Java 17 and Maven are needed: apt-get install openjdk-17-jdk-headless maven)" >&2; exit 1; }
done
echo "resolving Apache Kafka $version and MirrorMaker 2 from Maven Central into $dir (about a minute the first time)" >&2
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.$version.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mvn -q -B -Dstyle.color=never -f "$here/kafka/pom.xml" -Dkafka.version="$version" \
  dependency:copy-dependencies -DoutputDirectory="$tmp/libs" -DincludeScope=runtime >&2
ls "$tmp/libs/kafka_2.13-$version.jar" "$tmp/libs/connect-mirror-$version.jar" >/dev/null
cat > "$tmp/log4j2.properties" <<'PROPS'
# Brokers and MM2 started by the tests: warnings and errors only, to stderr.
status = warn
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = STDERR
PROPS
touch "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"

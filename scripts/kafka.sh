#!/usr/bin/env bash
# scripts/kafka.sh: a real single-node Apache Kafka broker (KRaft, combined
# broker+controller) on 127.0.0.1 for development and tests.
#
# The broker is the stock Apache Kafka server (kafka.Kafka) run from jars that
# Maven fetches from Maven Central; no tarball download, no Docker, no ZooKeeper.
# Needs: bash, java (17+), mvn (for the first fetch only), python3.
#
# Version choice (KAFKA_VERSION below)
# ------------------------------------
# Apache Kafka 4.4.0, the newest release on Maven Central when this was
# written (2026-11). Checked on this machine against faust-streaming 0.15.3,
# aiokafka 0.14.0 and confluent-kafka 2.16.1 (Python 3.11):
#   * confluent-kafka: produce, consume in a group, commit, transactions;
#   * aiokafka: produce (idempotent, gzip, headers), consume in a group,
#     commit and resume from the committed offsets, topic auto-creation,
#     transactions;
#   * a Faust worker (`app.py worker`, one agent, one Table with changelog,
#     store memory://): events processed, changelog written, offsets
#     committed, exit 0 about 1.4 s after SIGTERM, table recovered from the
#     changelog on restart; processing_guarantee="exactly_once" too.
#   No error or unsupported-version line in the broker log.
# Nothing failed, so no version was rejected. Kafka 4.0 removed old protocol
# versions (KIP-896), but aiokafka >= 0.13 picks each request's version from
# the broker's ApiVersions answer (its api_version parameter is a no-op, and
# faust 0.15.3 no longer passes it), and Kafka 4.x still serves the classic
# consumer-group protocol aiokafka speaks. The same checks on 3.9.2 (this
# script runs it with REVSTREAM_KAFKA_VERSION=3.9.2) behaved identically,
# Faust's own quirks included, so 3.9 offered no advantage.
#
# Run `scripts/kafka.sh --help` for the commands and environment variables.
set -euo pipefail

say() { printf '%s\n' "kafka.sh: $*"; }
die() { printf '%s\n' "kafka.sh: error: $*" >&2; exit 1; }

# A TCP port number, validated before any arithmetic on it.
port_number() {
    local name="$1" value="$2"
    if ! [[ "${value}" =~ ^[0-9]{1,5}$ ]] || ((10#${value} < 1 || 10#${value} > 65535)); then
        die "${name} must be a TCP port number (1-65535), got '${value}'"
    fi
    printf '%s\n' "$((10#${value}))"
}

KAFKA_VERSION="${REVSTREAM_KAFKA_VERSION:-4.4.0}"
SCALA_VERSION="2.13"
# log4j2 binding for Kafka's slf4j 1.7 logging; declared directly so Maven's
# nearest-wins rule aligns log4j-api/log4j-core with it.
LOG4J_VERSION="${REVSTREAM_KAFKA_LOG4J_VERSION:-2.25.5}"
DEPENDENCY_PLUGIN_VERSION="3.8.1"

KAFKA_HOME="${REVSTREAM_KAFKA_HOME:-${HOME:-/root}/.cache/revstream/kafka-${KAFKA_VERSION}}"
PORT="$(port_number REVSTREAM_KAFKA_PORT "${REVSTREAM_KAFKA_PORT:-19092}")"
CONTROLLER_PORT="$(port_number REVSTREAM_KAFKA_CONTROLLER_PORT "${REVSTREAM_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}")"
DATA_DIR="${REVSTREAM_KAFKA_DATA:-${KAFKA_HOME}/data-${PORT}}"
START_TIMEOUT="${REVSTREAM_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${REVSTREAM_KAFKA_STOP_TIMEOUT:-30}"
HEAP="${REVSTREAM_KAFKA_HEAP:-512m}"
EXTRA_CONFIG="${REVSTREAM_KAFKA_EXTRA_CONFIG:-}"
JAVA="${REVSTREAM_KAFKA_JAVA:-${JAVA_HOME:+${JAVA_HOME}/bin/}java}"
MVN="${REVSTREAM_KAFKA_MVN:-mvn}"
PYTHON="${REVSTREAM_KAFKA_PYTHON:-python3}"

# Absolute paths: the broker is found again by its command line.
[[ "${KAFKA_HOME}" == /* ]] || KAFKA_HOME="${PWD}/${KAFKA_HOME}"
[[ "${DATA_DIR}" == /* ]] || DATA_DIR="${PWD}/${DATA_DIR}"

JARS_DIR="${KAFKA_HOME}/jars"
FETCH_STAMP="${KAFKA_HOME}/.fetched"
PROPS_FILE="${DATA_DIR}/server.properties"
LOG4J_FILE="${DATA_DIR}/log4j2.properties"
LOG_DIRS="${DATA_DIR}/kraft-logs"
PID_FILE="${DATA_DIR}/broker.pid"
LOG_FILE="${DATA_DIR}/broker.log"
DATA_MARKER="${DATA_DIR}/.revstream-kafka-data"
BOOTSTRAP="127.0.0.1:${PORT}"

PROG="scripts/kafka.sh"

usage() {
    cat <<EOF
Usage: ${PROG} COMMAND [OPTIONS]

A real single-node Apache Kafka ${KAFKA_VERSION} broker (KRaft mode, combined
broker+controller) on 127.0.0.1, for development and tests.

Commands:
  fetch           Fetch the Kafka server jars from Maven Central with mvn into
                  the cache (instant once cached; no network then).
  start [--fresh] Fetch if needed, format the data dir on first use, start the
                  broker in the background and wait until it answers on
                  ${BOOTSTRAP}. Exits 0 at once if a broker already answers
                  there. --fresh wipes the data dir first (like 'reset').
  stop            Stop the broker (SIGTERM, then SIGKILL after
                  \$REVSTREAM_KAFKA_STOP_TIMEOUT s). Exits 0 if it was not running.
  restart [--fresh]  stop, then start.
  status          Say whether the broker runs; exit 0 if it runs, 3 if not.
  reset           Stop the broker if it runs and delete its data dir (topics,
                  offsets, metadata). The jar cache is kept.
  logs [N]        Print the last N (default 100) lines of the broker log.
  bootstrap       Print the bootstrap address (${BOOTSTRAP}).
  -h, --help      This help.

Environment variables (defaults in brackets):
  REVSTREAM_KAFKA_PORT             client port [19092]; bootstrap is 127.0.0.1:PORT
  REVSTREAM_KAFKA_CONTROLLER_PORT  KRaft controller port [PORT+1]
  REVSTREAM_KAFKA_HOME             jar cache [\$HOME/.cache/revstream/kafka-${KAFKA_VERSION}]
  REVSTREAM_KAFKA_DATA             data dir: kraft logs, server.properties,
                                   broker.pid, broker.log [\$REVSTREAM_KAFKA_HOME/data-PORT]
  REVSTREAM_KAFKA_VERSION          Apache Kafka version [4.4.0]
  REVSTREAM_KAFKA_LOG4J_VERSION    log4j2 version for the slf4j binding [2.25.5]
  REVSTREAM_KAFKA_HEAP             JVM max heap [512m]
  REVSTREAM_KAFKA_START_TIMEOUT    seconds to wait for the broker to answer [90]
  REVSTREAM_KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL [30]
  REVSTREAM_KAFKA_EXTRA_CONFIG     extra server.properties lines (key=value, one
                                   per line), appended last so they win
  REVSTREAM_KAFKA_JAVA             java binary [\$JAVA_HOME/bin/java or java]
  REVSTREAM_KAFKA_MVN              mvn binary [mvn]
  REVSTREAM_KAFKA_PYTHON           python used for the readiness probe [python3]

Current paths:
  cache: ${KAFKA_HOME}
  data:  ${DATA_DIR}
EOF
}

# Drop Java stack frames: the exception lines say what went wrong.
no_frames() {
    grep -vE '^[[:space:]]+(at |\.\.\. [0-9]+ (more|common frames omitted))' || true
}

log_tail() {
    local n="${1:-40}"
    if [[ -s "${LOG_FILE}" ]]; then
        printf '%s\n' "---- last ${n} lines of ${LOG_FILE} (stack frames left out) ----" >&2
        no_frames <"${LOG_FILE}" | tail -n "${n}" >&2
        printf '%s\n' "----" >&2
    fi
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH ($2)"
}

# Serialise start/stop/reset of one data dir (and fetches into one cache), so
# that parallel callers (e.g. several test processes) do not race. The lock is
# released when the script exits.
DATA_LOCK_FD=""
FETCH_LOCK_FD=""
take_lock() {
    local file="$1" var="$2" fd
    command -v flock >/dev/null 2>&1 || return 0
    mkdir -p "$(dirname "${file}")"
    exec {fd}>>"${file}"
    printf -v "${var}" '%s' "${fd}"
    flock -w 300 "${fd}" || die "could not lock ${file} within 300 s"
}

# ---------------------------------------------------------------- fetch

write_pom() {
    cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/kafka.sh: the runtime classpath of an Apache Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>revstream.local</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>${KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- kafka_2.13 (kafka.Kafka, kafka.tools.StorageTool) pulls kafka-server,
         kafka-metadata, kafka-raft, kafka-storage, the coordinators, ... at runtime scope. -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_${SCALA_VERSION}</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>${LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>${DEPENDENCY_PLUGIN_VERSION}</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
}

is_fetched() {
    [[ -f "${FETCH_STAMP}" && -d "${JARS_DIR}" ]] || return 1
    [[ "$(cat "${FETCH_STAMP}")" == "$(write_pom | cksum)" ]] || return 1
    compgen -G "${JARS_DIR}/kafka_${SCALA_VERSION}-${KAFKA_VERSION}.jar" >/dev/null
}

cmd_fetch() {
    if is_fetched; then
        say "Kafka ${KAFKA_VERSION} jars already in ${JARS_DIR}"
        return 0
    fi
    need "${MVN}" "Maven is needed once to fetch the Kafka jars"
    take_lock "${KAFKA_HOME}/.fetch.lock" FETCH_LOCK_FD
    if is_fetched; then  # another caller fetched while we waited
        say "Kafka ${KAFKA_VERSION} jars already in ${JARS_DIR}"
        return 0
    fi
    write_pom >"${KAFKA_HOME}/pom.xml"
    local tmp="${KAFKA_HOME}/jars.tmp.$$" mvn_log="${KAFKA_HOME}/mvn.log" started=${SECONDS}
    rm -rf "${tmp}"
    local -a args=(-q -B -ntp -Dstyle.color=never -f "${KAFKA_HOME}/pom.xml"
        "org.apache.maven.plugins:maven-dependency-plugin:${DEPENDENCY_PLUGIN_VERSION}:copy-dependencies"
        -DincludeScope=runtime -DoutputDirectory="${tmp}")
    # Offline first: instant (and network-free) when ~/.m2 already has everything.
    if ! "${MVN}" -o "${args[@]}" >"${mvn_log}" 2>&1; then
        say "fetching Apache Kafka ${KAFKA_VERSION} jars from Maven Central (mvn, about 45 MB) ..."
        rm -rf "${tmp}"
        # -U: retry artifacts whose earlier failed download Maven has cached.
        if ! "${MVN}" -U "${args[@]}" >"${mvn_log}" 2>&1; then
            rm -rf "${tmp}"
            sed -e 's/\x1b\[[0-9;]*m//g' "${mvn_log}" | grep -E '^\[ERROR\] [A-Z]' \
                | grep -vE 'To see the full|Re-run Maven|For more information' | head -n 5 >&2 || true
            die "mvn could not fetch org.apache.kafka:kafka_${SCALA_VERSION}:${KAFKA_VERSION} (full output: ${mvn_log})"
        fi
    fi
    [[ -f "${tmp}/kafka_${SCALA_VERSION}-${KAFKA_VERSION}.jar" ]] \
        || die "mvn finished but kafka_${SCALA_VERSION}-${KAFKA_VERSION}.jar is missing (see ${mvn_log})"
    rm -rf "${JARS_DIR}"
    mv "${tmp}" "${JARS_DIR}"
    write_pom | cksum >"${FETCH_STAMP}"
    say "Kafka ${KAFKA_VERSION}: $(find "${JARS_DIR}" -name '*.jar' | wc -l) jars in ${JARS_DIR} ($((SECONDS - started)) s)"
}

# ---------------------------------------------------------------- process helpers

# True if PID is alive and is the kafka.Kafka JVM of this data dir.
is_our_broker() {
    local pid="$1" cmdline=""
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/${pid}/cmdline" ]] || { kill -0 "${pid}" 2>/dev/null; return; }
    local -a argv=()
    mapfile -d '' -t argv <"/proc/${pid}/cmdline" 2>/dev/null || return 1
    cmdline="${argv[*]}"
    [[ "${cmdline}" == *"kafka.Kafka ${PROPS_FILE}"* ]]
}

# Print the pid of this data dir's broker, if one runs (pid file first, then a
# scan of /proc for the exact command line, in case the pid file was lost).
broker_pid() {
    local pid
    if [[ -f "${PID_FILE}" ]]; then
        pid="$(<"${PID_FILE}")"
        if is_our_broker "${pid}"; then
            printf '%s\n' "${pid}"
            return 0
        fi
    fi
    local d
    for d in /proc/[0-9]*; do
        pid="${d#/proc/}"
        [[ "${pid}" == "$$" ]] && continue
        if [[ -r "${d}/cmdline" ]] && is_our_broker "${pid}"; then
            printf '%s\n' "${pid}"
            return 0
        fi
    done
    return 1
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Wait until the broker answers Kafka requests on BOOTSTRAP.
#   $1: seconds; $2: pid to watch (0 = none).
# Exit status: 0 ready, 1 timeout, 2 the watched process died.
probe() {
    local timeout="$1" pid="$2" deadline=$((SECONDS + $1)) rc
    while :; do
        rc=0
        "${PYTHON}" -c "${PROBE_PY}" "${BOOTSTRAP}" "${timeout}" "${pid}" || rc=$?
        case "${rc}" in
            0 | 1 | 2) return "${rc}" ;;
        esac
        ((SECONDS < deadline)) || return 1
        timeout=$((deadline - SECONDS))
        sleep 0.5
    done
}

# The readiness probe: plain Kafka protocol over a socket, standard library
# only (no client library, whose background threads could crash it).
# Ready = ApiVersions answers, FindCoordinator finds the group and the
# transaction coordinators, and InitProducerId hands out a producer id. On a
# fresh broker this creates and loads __consumer_offsets and
# __transaction_state, so the first consumer group or idempotent or
# transactional producer of a test does not meet COORDINATOR_NOT_AVAILABLE or
# COORDINATOR_LOAD_IN_PROGRESS (which aiokafka and librdkafka log).
PROBE_PY='
import os, socket, struct, sys, time

bootstrap, timeout, pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
host, port = bootstrap.rsplit(":", 1)
deadline = time.monotonic() + timeout
API_VERSIONS, FIND_COORDINATOR, INIT_PRODUCER_ID = 18, 10, 22


def alive():
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def call(api_key, version, body, corr=[0]):
    corr[0] += 1
    client = b"revstream-kafka-sh"
    msg = struct.pack(">hhih", api_key, version, corr[0], len(client)) + client + body
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        sock.settimeout(3)
        sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", recv_exact(sock, 4))[0]
        data = recv_exact(sock, size)
    if struct.unpack(">i", data[:4])[0] != corr[0]:
        raise ConnectionError("bad correlation id")
    return data[4:]


def ready():
    data = call(API_VERSIONS, 0, b"")
    error, count = struct.unpack(">hi", data[:6])
    if error:
        return False
    versions = {}
    for i in range(count):
        key, low, high = struct.unpack(">hhh", data[6 + 6 * i:12 + 6 * i])
        versions[key] = (low, high)
    low, high = versions.get(FIND_COORDINATOR, (99, -1))
    if not low <= 1 <= high:
        return True  # cannot ask this broker; ApiVersions answering must do
    key = b"revstream-kafka-sh-probe"
    for key_type in (b"\x00", b"\x01"):  # group, then transaction coordinator
        data = call(FIND_COORDINATOR, 1, struct.pack(">h", len(key)) + key + key_type)
        _throttle, error = struct.unpack(">ih", data[:6])
        if error:
            return False
    # An idempotent producer id: fails with COORDINATOR_LOAD_IN_PROGRESS
    # until the transaction coordinator has loaded its partition.
    low, high = versions.get(INIT_PRODUCER_ID, (99, -1))
    if low <= 0 <= high:
        data = call(INIT_PRODUCER_ID, 0, struct.pack(">hi", -1, 60000))
        _throttle, error = struct.unpack(">ih", data[:6])
        if error:
            return False
    return True


code = 1
while True:
    if not alive():
        code = 2
        break
    try:
        if ready():
            code = 0
            break
    except (OSError, struct.error):
        pass
    if time.monotonic() >= deadline:
        break
    time.sleep(0.25)
sys.exit(code)
'

# ---------------------------------------------------------------- config

write_config() {
    local cid="$1"
    cat >"${PROPS_FILE}" <<EOF
# Generated by scripts/kafka.sh on every start; edits here are overwritten.
# Use REVSTREAM_KAFKA_EXTRA_CONFIG to add or override settings.
# cluster.id (informational; the real one is in ${LOG_DIRS}/meta.properties): ${cid}
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${PORT},CONTROLLER://127.0.0.1:${CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=${LOG_DIRS}

# Single node, tuned for tests.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.retention.hours=168
EOF
    if [[ -n "${EXTRA_CONFIG}" ]]; then
        printf '\n# REVSTREAM_KAFKA_EXTRA_CONFIG\n%s\n' "${EXTRA_CONFIG}" >>"${PROPS_FILE}"
    fi
    cat >"${LOG4J_FILE}" <<'EOF'
# Generated by scripts/kafka.sh: broker logs go to stdout, which is broker.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.change.name = state.change.logger
logger.change.level = warn
logger.netclient.name = org.apache.kafka.clients.NetworkClient
logger.netclient.level = warn
EOF
}

new_cluster_id() {
    # A Kafka cluster id is a UUID in URL-safe base64 without padding (22 chars).
    # Like Kafka's own Uuid.randomUuid(), never start with "-" (the storage
    # tool would take such an id for an option).
    "${PYTHON}" -c '
import base64, uuid
while True:
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not cid.startswith("-"):
        print(cid)
        break
' 2>/dev/null || printf '%s\n' "cmV2c3RyZWFtLWthZmthLQ"
}

java_opts() {
    printf '%s\n' "-Xmx${HEAP}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="file:${LOG4J_FILE}" \
        -Dlog4j2.shutdownHookEnabled=false \
        -Dkafka.logs.dir="${DATA_DIR}" -cp "${JARS_DIR}/*"
}

# ---------------------------------------------------------------- commands

safe_wipe_data() {
    [[ -d "${DATA_DIR}" ]] || return 0
    case "${DATA_DIR}" in
        "" | "/" | "${HOME:-/nonexistent}" | "${KAFKA_HOME}") die "refusing to delete '${DATA_DIR}'" ;;
    esac
    if [[ -n "$(ls -A "${DATA_DIR}" 2>/dev/null)" && ! -f "${DATA_MARKER}" ]]; then
        die "refusing to delete ${DATA_DIR}: it was not created by ${PROG} (no $(basename "${DATA_MARKER}"))"
    fi
    rm -rf "${DATA_DIR}"
    say "deleted ${DATA_DIR}"
}

cmd_start() {
    local fresh=0 arg
    for arg in "$@"; do
        case "${arg}" in
            --fresh) fresh=1 ;;
            *) die "start: unknown option '${arg}' (try --help)" ;;
        esac
    done
    ((PORT != CONTROLLER_PORT)) || die "the client and controller ports must differ (both ${PORT})"
    [[ "${START_TIMEOUT}" =~ ^[0-9]+$ ]] || die "REVSTREAM_KAFKA_START_TIMEOUT must be whole seconds"
    need "${JAVA}" "Java 17+ runs the broker"
    need "${PYTHON}" "python3 probes the broker"

    if ((fresh)); then
        cmd_stop
        safe_wipe_data
    fi

    local pid
    if pid="$(broker_pid)"; then
        if probe 5 "${pid}"; then
            say "already running on ${BOOTSTRAP} (pid ${pid}, data ${DATA_DIR})"
            return 0
        fi
        say "broker pid ${pid} runs but does not answer yet; waiting up to ${START_TIMEOUT} s ..."
        wait_ready "${pid}" "${SECONDS}"
        return 0
    fi
    if port_open "${PORT}"; then
        if probe 5 0; then
            say "already running: a Kafka broker answers on ${BOOTSTRAP} (not started from ${DATA_DIR})"
            return 0
        fi
        die "port ${PORT} on 127.0.0.1 is in use by something that is not a Kafka broker"
    fi
    if port_open "${CONTROLLER_PORT}"; then
        die "controller port ${CONTROLLER_PORT} on 127.0.0.1 is in use (set REVSTREAM_KAFKA_CONTROLLER_PORT)"
    fi

    is_fetched || cmd_fetch
    local t0=${SECONDS}

    mkdir -p "${DATA_DIR}" "${LOG_DIRS}"
    touch "${DATA_MARKER}"
    local cid
    if [[ -f "${LOG_DIRS}/meta.properties" ]]; then
        cid="$(sed -n 's/^cluster\.id=//p' "${LOG_DIRS}/meta.properties")"
    else
        cid="$(new_cluster_id)"
    fi
    write_config "${cid}"

    local -a jopts
    mapfile -t jopts < <(java_opts)
    if [[ ! -f "${LOG_DIRS}/meta.properties" ]]; then
        if ! "${JAVA}" "${jopts[@]}" kafka.tools.StorageTool format --cluster-id="${cid}" -c "${PROPS_FILE}" \
                --ignore-formatted >"${DATA_DIR}/format.log" 2>&1; then
            grep -vE '^\[[0-9-]+ [0-9:,]+\] INFO ' "${DATA_DIR}/format.log" | no_frames | tail -n 15 >&2
            die "formatting the KRaft storage in ${LOG_DIRS} failed"
        fi
    fi

    [[ -f "${LOG_FILE}" ]] && mv -f "${LOG_FILE}" "${LOG_FILE}.prev"
    local -a launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    # New session + no stdin: the broker outlives the shell (and CI step) that
    # started it, and a Ctrl-C in the terminal does not reach it.
    (
        # The broker must not inherit (and so hold) the lock file descriptors.
        if [[ -n "${DATA_LOCK_FD}" ]]; then exec {DATA_LOCK_FD}>&-; fi
        if [[ -n "${FETCH_LOCK_FD}" ]]; then exec {FETCH_LOCK_FD}>&-; fi
        exec nohup "${launcher[@]}" "${JAVA}" "${jopts[@]}" kafka.Kafka "${PROPS_FILE}" \
            >"${LOG_FILE}" 2>&1 </dev/null
    ) &
    pid=$!
    printf '%s\n' "${pid}" >"${PID_FILE}"
    say "starting Kafka ${KAFKA_VERSION} on ${BOOTSTRAP} (pid ${pid}, log ${LOG_FILE}) ..."
    wait_ready "${pid}" "${t0}"
}

wait_ready() {
    local pid="$1" t0="$2" rc=0
    probe "${START_TIMEOUT}" "${pid}" || rc=$?
    case "${rc}" in
        0)
            if ! is_our_broker "${pid}"; then
                pid="$(broker_pid)" || pid="?"
                [[ "${pid}" == "?" ]] || printf '%s\n' "${pid}" >"${PID_FILE}"
            fi
            say "ready on ${BOOTSTRAP} after $((SECONDS - t0)) s (pid ${pid}, data ${DATA_DIR})"
            ;;
        2)
            rm -f "${PID_FILE}"
            printf '%s\n' "kafka.sh: error: the broker exited during startup (see ${LOG_FILE})" >&2
            log_tail 40
            exit 1
            ;;
        *)
            printf '%s\n' "kafka.sh: error: the broker (pid ${pid}) did not answer on ${BOOTSTRAP} within ${START_TIMEOUT} s; it is left running, stop it with '${PROG} stop'" >&2
            log_tail 40
            exit 1
            ;;
    esac
}

cmd_stop() {
    local pid
    if ! pid="$(broker_pid)"; then
        rm -f "${PID_FILE}"
        if port_open "${PORT}"; then
            say "not running from ${DATA_DIR}; something else listens on ${BOOTSTRAP} and is left alone"
        else
            say "not running (data ${DATA_DIR})"
        fi
        return 0
    fi
    kill -TERM "${pid}" 2>/dev/null || true
    local waited=0
    while is_our_broker "${pid}" && ((waited < STOP_TIMEOUT * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if is_our_broker "${pid}"; then
        say "broker pid ${pid} ignored SIGTERM for ${STOP_TIMEOUT} s; sending SIGKILL"
        kill -KILL "${pid}" 2>/dev/null || true
        while is_our_broker "${pid}"; do sleep 0.1; done
    fi
    rm -f "${PID_FILE}"
    say "stopped (pid ${pid})"
}

cmd_status() {
    local pid
    if pid="$(broker_pid)"; then
        if probe 3 "${pid}"; then
            say "running on ${BOOTSTRAP} (pid ${pid}, Kafka ${KAFKA_VERSION}, data ${DATA_DIR})"
        else
            say "process running (pid ${pid}) but not answering on ${BOOTSTRAP} (starting or stuck; see ${LOG_FILE})"
        fi
        return 0
    fi
    if port_open "${PORT}"; then
        say "not started from ${DATA_DIR}, but something listens on ${BOOTSTRAP}"
    else
        say "not running (${BOOTSTRAP}, data ${DATA_DIR})"
    fi
    return 3
}

cmd_reset() {
    cmd_stop
    safe_wipe_data
}

cmd_logs() {
    local n="${1:-100}"
    [[ "${n}" =~ ^[0-9]+$ ]] || die "logs: N must be a number"
    [[ -f "${LOG_FILE}" ]] || die "no log yet at ${LOG_FILE}"
    tail -n "${n}" "${LOG_FILE}"
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "${cmd}" in
        fetch) cmd_fetch ;;
        start) take_lock "${DATA_DIR}.lock" DATA_LOCK_FD; cmd_start "$@" ;;
        stop) take_lock "${DATA_DIR}.lock" DATA_LOCK_FD; cmd_stop ;;
        restart) take_lock "${DATA_DIR}.lock" DATA_LOCK_FD; cmd_stop; cmd_start "$@" ;;
        status) cmd_status ;;
        reset) take_lock "${DATA_DIR}.lock" DATA_LOCK_FD; cmd_reset ;;
        logs) cmd_logs "$@" ;;
        bootstrap) printf '%s\n' "${BOOTSTRAP}" ;;
        -h | --help | help) usage ;;
        "") usage >&2; exit 2 ;;
        *) printf '%s\n' "kafka.sh: unknown command '${cmd}'" >&2; usage >&2; exit 2 ;;
    esac
}

main "$@"

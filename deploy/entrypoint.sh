#!/bin/sh
# Waits for Kafka, then runs `tweetner "$@"` (or a shell/python command line as given).
# Compose's depends_on/healthchecks order start-up; this also covers restarts and other
# orchestrators, where a stage may come up before Kafka or PostgreSQL answer.
set -e

wait_for() {  # host:port, name
    host=${1%:*}; port=${1##*:}
    i=0
    until python -c "import socket,sys; socket.create_connection(('$host', $port), 2)" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -ge 60 ]; then
            echo "tweetner: $2 at $1 is not reachable after 120s" >&2
            exit 1
        fi
        sleep 2
    done
}

if [ -n "$KAFKA_BOOTSTRAP" ]; then
    wait_for "${KAFKA_BOOTSTRAP%%,*}" kafka
fi
case "$1" in
    sh|bash|python) exec "$@" ;;  # e.g. a shell that expands INGEST_ARGS
    *) exec tweetner "$@" ;;
esac

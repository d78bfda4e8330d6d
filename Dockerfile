# The mqstream image. Build it with scripts/image.sh, not `docker build .`:
# the script builds a static binary with the local Go toolchain and hands
# this file a context holding only that binary and the empty directories
# below, so nothing is pulled from a registry (the base is empty).
#
#   docker run -p 1883:1883 -p 8080:8080 -v mqdata:/data mqstream:dev
#
# Data:    /data, a volume owned by the image's user (uid 65532). With the
#          working directory /, the default node.data_dir ./data is /data,
#          and a mounted file may still choose another.
# Config:  defaults, then a file given to serve (-c /etc/mqstream/mqstream.yaml
#          after mounting it), then MQSTREAM_* variables. The listeners'
#          defaults already bind every interface (:1883, :8083, :8080).
# Stop:    SIGTERM reaches mqstream as PID 1 (exec-form ENTRYPOINT); it stops
#          taking publishes, finishes pending commits and exits. Give it
#          time: docker stop -t 40, compose stop_grace_period: 40s.
FROM scratch

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/mqstream/mqstream

LABEL org.opencontainers.image.title="mqstream" \
      org.opencontainers.image.description="MQTT-native streaming database: every publish stored durably in ordered streams, served to consumer groups, SQL and REST" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.documentation="${SOURCE}/blob/main/docs/operations.md#run-in-containers"

COPY etc/ /etc/
COPY --chown=65532:65532 data/ /data/
COPY --chown=65532:65532 tmp/ /tmp/
COPY mqstream /usr/local/bin/mqstream

USER 65532:65532
WORKDIR /
VOLUME ["/data"]
# MQTT, MQTT over WebSocket, HTTP (REST, /metrics, /readyz), and in cluster
# mode gossip (TCP and UDP) and RPC on the ports the node's file sets.
EXPOSE 1883 8083 8080 7946/tcp 7946/udp 7947
STOPSIGNAL SIGTERM
# healthcheck reads http.listen from the defaults and MQSTREAM_* variables;
# when a mounted file moves it, pass the file: healthcheck -c <file>.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/mqstream", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/mqstream"]
CMD ["serve"]

# jobbot in a container: `docker build -t jobbot .` then
#   docker run -p 8080:8080 -v jobbot-data:/data -e JOBBOT_ADMIN_PASSWORD=… jobbot            # the demo
#   docker run -p 8080:8080 -v jobbot-data:/data --env-file .env jobbot run                   # real Telegram
# The data directory (configs/, sessions/, data/, .env) is the volume /data; the process runs as
# an unprivileged user and listens on 0.0.0.0:$PORT (8080 unless the platform sets PORT). Put it
# behind a TLS reverse proxy and name the proxy with JOBBOT_TRUSTED_PROXY (README).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p jobbot \
 && cp target/release/jobbot /usr/local/bin/jobbot

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin jobbot \
 && mkdir /data \
 && chown jobbot:jobbot /data \
 && chmod 0700 /data
COPY --from=build /usr/local/bin/jobbot /usr/local/bin/jobbot
USER jobbot
# Without --listen / JOBBOT_LISTEN, jobbot listens on 0.0.0.0:$PORT; platforms that assign a
# port set PORT themselves.
ENV JOBBOT_DATA_DIR=/data \
    PORT=8080
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["jobbot"]
CMD ["demo"]

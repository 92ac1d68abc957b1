# notification-drainer container image.
#   docker build --build-arg REVISION="$(git rev-parse --short=12 HEAD)" -t notification-drainer .
#   docker run -v /etc/notification-drainer:/etc/notification-drainer:ro \
#              -v drainer-spool:/var/lib/notification-drainer -p 9464:9464 notification-drainer
# Linted in CI by hadolint (.ci/ops-checks) and tests/unit/test_deploy.py; its build context
# by .ci/build_context.py; built and run by .ci/ops-checks where a container engine can.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY daemon/ daemon/
# the consumer kit: its schemas are what `drainer share` hands out to consumer authors
COPY drainer_consumer/ drainer_consumer/
# daemon/share/ links to these (package data: `drainer share`)
COPY deploy/ deploy/
COPY config/drainer.example.toml config/
# The git revision (`drainer --version`, drainer_build_info): the context has no .git, so
# pass it: --build-arg REVISION=$(git rev-parse --short=12 HEAD). setup.py records it.
ARG REVISION=unknown
# Installed into a prefix that the runtime stage copies whole: no source, no build cache.
RUN DRAINER_REVISION="$REVISION" pip install --no-cache-dir --prefix=/install -c constraints.txt .

FROM python:3.11-slim
# The endpoints must be reachable from outside the container's network namespace, and
# client_secret_file = "name" resolves in $CREDENTIALS_DIRECTORY: docker/compose secrets
# are mounted at /run/secrets.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DRAINER_SERVER__LISTEN=0.0.0.0:9464 \
    CREDENTIALS_DIRECTORY=/run/secrets
RUN groupadd --system --gid 10001 drainer \
    && useradd --system --uid 10001 --gid drainer --no-create-home \
       --home-dir /var/lib/notification-drainer --shell /usr/sbin/nologin drainer \
    && install -d -o drainer -g drainer -m 0700 /var/lib/notification-drainer \
    && install -d -m 0755 /etc/notification-drainer
COPY --from=build /install /usr/local
USER 10001:10001
WORKDIR /var/lib/notification-drainer
VOLUME ["/var/lib/notification-drainer"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["drainer"]
CMD ["run", "--config", "/etc/notification-drainer/drainer.toml"]

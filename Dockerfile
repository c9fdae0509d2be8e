# DripPulse's production image: the API and every worker, one image, the process chosen by the command.
#   docker build -t drippulse .
#   docker run --rm drippulse --help
#   docker run --env-file ... drippulse api             (or: worker sink|qualifier|webhooks|crm)
# infra/docker-compose.yml runs them all beside Kafka, the schema registry, ClickHouse, PostgreSQL and
# Redis. The image has no embedded stack (the `embedded` extra): every service URL must be set.

ARG PYTHON_VERSION=3.11
ARG DEBIAN=bookworm

# ---- build: the package and its dependencies in /opt/drippulse, the hot path compiled with mypyc ----
# The full python image has what mypyc needs: a C compiler, make and the interpreter's headers.
FROM python:${PYTHON_VERSION}-${DEBIAN} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/drippulse/bin:$PATH
RUN python -m venv /opt/drippulse
WORKDIR /src

# The dependencies first, in a layer of their own: they change far less often than the code.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY . .
# 1. mypyc compiles the Makefile's HOT_PATH into extension modules beside their sources, as `make`
#    does (compile-hot-path 1: compile or fail; README, "The hot path is compiled").
# 2. The package is installed from the sources (a wheel: code and data files, not the extensions).
# 3. The extensions are copied into the installed package. Copied after the install, each is newer
#    than its source, as the stale-build check at import (processors/stale_build.py) requires.
# 4. mypy served the build only. The last command fails the build unless the compiled modules are the
#    ones that load, from outside the sources.
RUN pip install "mypy>=1.13" "setuptools>=68" \
    && scripts/compile-hot-path 1 /opt/drippulse/bin $(make --no-print-directory hot-path-modules) \
    && pip install --no-deps . \
    && site="$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && find processors streams -name '*.so' -exec cp --parents {} "$site" \; \
    && pip uninstall --yes mypy \
    && cd / \
    && python -c 'import processors.routing as a, streams.runtime.records as b; \
assert all(m.__file__.endswith(".so") for m in (a, b)), (a.__file__, b.__file__)' \
    && drippulse --help >/dev/null

# ---- runtime: the interpreter, the virtualenv, a user without privileges ----
FROM python:${PYTHON_VERSION}-slim-${DEBIAN} AS runtime
RUN groupadd --system --gid 10001 drippulse \
    && useradd --system --uid 10001 --gid drippulse --home-dir /var/lib/drippulse --create-home \
        --shell /usr/sbin/nologin drippulse
COPY --from=build /opt/drippulse /opt/drippulse
# DRIPPULSE_HOME holds what a process keeps locally (logs of the embedded stack, none in production);
# the API listens on every interface of the container, not its loopback.
ENV PATH=/opt/drippulse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DRIPPULSE_HOME=/var/lib/drippulse \
    DRIPPULSE_API_HOST=0.0.0.0
USER drippulse
WORKDIR /var/lib/drippulse
EXPOSE 8000
ENTRYPOINT ["drippulse"]
CMD ["--help"]

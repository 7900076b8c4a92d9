# OpenSearch from the official image (ML Commons, neural-search and k-NN included) with lref's
# tier-filter plugin, built by a Maven stage from plugin/tier-filter, and the ML Commons settings
# the lref connector needs. Build context: the repository root (see docker-compose.yml).
ARG OPENSEARCH_VERSION=3.6.0

FROM maven:3.9-eclipse-temurin-21 AS tier-filter
ARG OPENSEARCH_VERSION
WORKDIR /src
COPY plugin/tier-filter/ ./
# `package` runs the plugin's JUnit tests too.
RUN mvn -q -B -Dopensearch.version=${OPENSEARCH_VERSION} package

FROM opensearchproject/opensearch:${OPENSEARCH_VERSION}
COPY --from=tier-filter /src/target/lref-tier-filter-0.1.0.zip /tmp/lref-tier-filter.zip
RUN /usr/share/opensearch/bin/opensearch-plugin install --batch file:///tmp/lref-tier-filter.zip \
 && rm /tmp/lref-tier-filter.zip
# Remote models on this (non-ML) node, a connector to a private address, and only the reranker's URL
# trusted. `lref opensearch install` (run by the store service) checks and keeps these.
RUN printf '%s\n' \
      'plugins.ml_commons.only_run_on_ml_node: false' \
      'plugins.ml_commons.connector.private_ip_enabled: true' \
      'plugins.ml_commons.trusted_connector_endpoints_regex: ["^http://reranker(-gpu)?:8000/.*$"]' \
      >> /usr/share/opensearch/config/opensearch.yml

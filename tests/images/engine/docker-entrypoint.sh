#!/bin/bash
# Start the node the way the official images do: every environment variable whose name
# looks like a setting (lower case, dotted) becomes a -E option.
set -euo pipefail

settings=()
while IFS='=' read -r -d '' name value; do
  [[ "$name" =~ ^[a-z0-9_]+(\.[a-z0-9_]+)+$ ]] || continue
  # The integ-test distribution has no security plugin; the official image's callers
  # may still pass plugins.security.* settings, which would be unknown here.
  if [[ "$name" == plugins.security.* && ! -d "$ENGINE_HOME/plugins/opensearch-security" ]]; then
    echo "docker-entrypoint: ignoring $name (no security plugin in this image)" >&2
    continue
  fi
  settings+=("-E${name}=${value}")
done < <(env -0)

# Elasticsearch reads ES_JAVA_OPTS; callers written for OpenSearch set OPENSEARCH_JAVA_OPTS.
if [ "$ENGINE" = elasticsearch ] && [ -z "${ES_JAVA_OPTS:-}" ]; then
  export ES_JAVA_OPTS="${OPENSEARCH_JAVA_OPTS:-}"
fi

exec "$ENGINE_HOME/bin/$ENGINE" -Enetwork.host=0.0.0.0 "${settings[@]}" "$@"

#!/bin/bash
# First start: write the security configuration with the plugin's demo installer (as the
# official image does), then start the node through docker-entrypoint.sh.
#
# - OPENSEARCH_INITIAL_ADMIN_PASSWORD is required and must pass the installer's strength
#   check; the node refuses to start otherwise (the installer can print its refusal and
#   still exit 0, so its output is checked too).
# - Certificates mounted in /certs replace the demo's, by the demo's file names:
#   root-ca.pem (the CA), esnode.pem + esnode-key.pem (the node, HTTP and transport),
#   kirk.pem + kirk-key.pem (the admin client, DN CN=kirk,OU=client,O=client,L=test,C=de).
#   Keys are PKCS#8 PEM.
# - The audit log goes to the node's log (stdout) instead of an index.
set -euo pipefail

home=/usr/share/opensearch
config="$home/config"
marker="######## Start OpenSearch Security Demo Configuration ########"

fail() {
  echo "secured-entrypoint: $*" >&2
  exit 1
}

if ! grep -qF "$marker" "$config/opensearch.yml"; then
  [ -n "${OPENSEARCH_INITIAL_ADMIN_PASSWORD:-}" ] ||
    fail "OPENSEARCH_INITIAL_ADMIN_PASSWORD is required (a strong password for the admin user)"
  set +e
  output=$(bash "$home/plugins/opensearch-security/tools/install_demo_configuration.sh" -y -i -s 2>&1)
  status=$?
  set -e
  echo "$output"
  if [ "$status" -ne 0 ] || grep -q "failed validation" <<<"$output" ||
    ! grep -q "^### Success" <<<"$output"; then
    fail "the security demo installer refused the configuration (exit $status): not starting"
  fi

  # One audit sink: the log (a second plugins.security.audit.type key would break the YAML).
  sed -i '/^plugins\.security\.audit\.type:/d' "$config/opensearch.yml"
  cat >>"$config/opensearch.yml" <<'YAML'
plugins.security.audit.type: log4j
plugins.security.audit.config.log4j.logger_name: audit
plugins.security.audit.config.log4j.level: INFO
YAML

  if [ -d /certs ]; then
    for file in root-ca.pem esnode.pem esnode-key.pem kirk.pem kirk-key.pem; do
      [ -r "/certs/$file" ] || fail "/certs is mounted but /certs/$file is missing or unreadable"
      cp "/certs/$file" "$config/$file"
    done
    sed -i '/^plugins\.security\.allow_unsafe_democertificates:/d' "$config/opensearch.yml"
  fi
fi

exec /usr/local/bin/docker-entrypoint.sh "$@"

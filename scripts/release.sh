#!/usr/bin/env bash
# Release merge-job to an OCI registry: the image and the chart, pinned by digest, with a
# CycloneDX SBOM and a signature.
#
#   scripts/release.sh --registry HOST[:PORT]/PATH [--output FILE.json]
#   scripts/release.sh --print-versions      the versions it would release, as shell assignments
#
# 1. builds the image (scripts/build-image.sh, the offline build) and pushes it as
#    HOST:PORT/PATH/merge-job:<version>, recording its digest;
# 2. packages the chart from a copy of charts/merge-job whose values pin that image
#    (repository, tag kept for readability, and `image.digest`, which the chart uses), and
#    pushes it with `helm push` to oci://HOST:PORT/PATH/charts: install it with
#    `helm install merge-job oci://HOST:PORT/PATH/charts/merge-job --version <chart version>`
#    (the chart lives under charts/ because an image and a chart of one version under the
#    same repository name would share, and overwrite, one tag);
# 3. makes the image's CycloneDX SBOM (scripts/sbom.py: the locked Python packages with
#    their hashes, the Debian packages of the base) and attaches it to the image as a signed
#    attestation (`cosign attest --type cyclonedx`);
# 4. signs the image digest (`cosign sign`) with a key pair; nothing is sent to a
#    transparency log or any other service: the registry is the only server it talks to.
# It prints what is in the registry (references and digests) and writes the same as JSON to
# --output. Idempotent: a re-run of one commit pushes the same image digest, keeps a chart
# that already pins it, and adds no signature or SBOM that is already there and verifies.
#
# Environment:
#   REGISTRY_USERNAME, REGISTRY_PASSWORD   registry credentials (none: anonymous)
#   REGISTRY_CA_FILE                       CA certificate (PEM) of the registry's TLS
#                                          certificate (default: the system's trust store)
#   COSIGN_KEY                             the signing key: a file made by
#                                          `cosign generate-key-pair`, or a KMS URI
#   COSIGN_PASSWORD                        the key file's password
#
# Pushes with skopeo (Debian's, installed when missing): it copies from the Docker engine
# (`docker-daemon:`) with the CA and credentials given here, leaving the engine's
# configuration (/etc/docker/certs.d, ~/.docker) alone. helm, cosign and the registry
# client of skopeo read the same credentials from one file in a temporary directory, so no
# password is on a command line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cd "$repo"
cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
chart_src="$repo/charts/merge-job"

# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

usage() {
  echo "usage: $0 --registry HOST[:PORT]/PATH [--output FILE.json] | --print-versions" >&2
  exit 2
}

# The version is pyproject.toml's; the chart's appVersion must say the same (a test keeps
# them in step), its own version moves with chart changes.
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
chart_field() { sed -n "s/^$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *$/\1/p" "$chart_src/Chart.yaml"; }
chart_version=$(chart_field version)
app_version=$(chart_field appVersion)

registry="" output=""
while [ $# -gt 0 ]; do
  case "$1" in
    --registry) registry=${2:?--registry needs HOST[:PORT]/PATH}; shift 2 ;;
    --output) output=${2:?--output needs a file}; shift 2 ;;
    --print-versions)
      printf 'VERSION=%s\nIMAGE_TAG=%s\nCHART_VERSION=%s\nCHART_APP_VERSION=%s\n' \
        "$version" "$version" "$chart_version" "$app_version"
      exit 0
      ;;
    *) usage ;;
  esac
done
[ -n "$registry" ] || usage
registry=${registry%/}
registry=${registry#oci://}
[ "$app_version" = "$version" ] \
  || die "charts/merge-job/Chart.yaml appVersion $app_version differs from pyproject.toml's version $version"
[ -n "${COSIGN_KEY:-}" ] || die "COSIGN_KEY must name the signing key (cosign generate-key-pair makes one)"

# --- tools -------------------------------------------------------------------------------

debian_package skopeo skopeo
[ -x "$cache/bin/helm" ] || bash "$here/install-tools.sh" >&2
bash "$here/install-release-tools.sh" cosign sbom >&2
helm="$cache/bin/helm"
cosign="$cache/bin/cosign"
# shellcheck source=ensure-venv.sh
source "$here/ensure-venv.sh" >&2

work=$(mktemp -d /tmp/merge-job-release.XXXXXX)
trap 'rm -rf "$work"' EXIT

# One credentials file in the Docker config format: skopeo (--authfile), helm
# (--registry-config) and cosign (DOCKER_CONFIG) all read it.
host=${registry%%/*}
mkdir -p "$work/docker"
python3 - "$host" "$work/docker/config.json" <<'EOF'
import base64, json, os, sys

host, path = sys.argv[1:]
auths = {}
if os.environ.get("REGISTRY_USERNAME"):
    pair = f"{os.environ['REGISTRY_USERNAME']}:{os.environ.get('REGISTRY_PASSWORD', '')}"
    auths[host] = {"auth": base64.b64encode(pair.encode()).decode()}
with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as file:
    json.dump({"auths": auths}, file)
EOF
auth="$work/docker/config.json"
export DOCKER_CONFIG="$work/docker"
skopeo_tls=() skopeo_dest_tls=() helm_tls=() cosign_tls=()
if [ -n "${REGISTRY_CA_FILE:-}" ]; then
  [ -r "$REGISTRY_CA_FILE" ] || die "REGISTRY_CA_FILE $REGISTRY_CA_FILE cannot be read"
  mkdir -p "$work/certs"
  cp "$REGISTRY_CA_FILE" "$work/certs/ca.crt"  # skopeo reads *.crt of a directory as CAs
  skopeo_tls=(--cert-dir "$work/certs")
  skopeo_dest_tls=(--dest-cert-dir "$work/certs")
  helm_tls=(--ca-file "$REGISTRY_CA_FILE")
  cosign_tls=(--registry-cacert "$REGISTRY_CA_FILE")
fi
skopeo_inspect() { skopeo inspect --authfile "$auth" "${skopeo_tls[@]}" "$@"; }
helm_oci() { "$helm" --registry-config "$auth" "$@"; }

# --- image -------------------------------------------------------------------------------

local_image=$(bash "$here/build-image.sh")
image="$registry/merge-job:$version"
log "pushing $local_image as $image"
skopeo copy --quiet --format oci --retry-times 2 \
  --dest-authfile "$auth" "${skopeo_dest_tls[@]}" \
  --digestfile "$work/image.digest" "docker-daemon:$local_image" "docker://$image" \
  || die "pushing $image failed: check REGISTRY_USERNAME, REGISTRY_PASSWORD and REGISTRY_CA_FILE (skopeo's error above)"
image_digest=$(cat "$work/image.digest")
repository="$registry/merge-job"

# --- chart -------------------------------------------------------------------------------

chart_repo="oci://$registry/charts"
chart="$chart_repo/merge-job"
pinned=$(helm_oci show values "$chart" --version "$chart_version" "${helm_tls[@]}" 2>/dev/null \
  | .venv/bin/python -c 'import sys, yaml; print((yaml.safe_load(sys.stdin) or {}).get("image", {}).get("digest", ""))' \
  || true)
if [ "$pinned" = "$image_digest" ]; then
  log "chart $chart:$chart_version already pins $image_digest"
else
  [ -z "$pinned" ] || log "chart $chart:$chart_version pins ${pinned:-no digest}: replacing it"
  cp -R "$chart_src" "$work/chart"
  # Only the three image values change; the comments that document them stay.
  .venv/bin/python - "$work/chart/values.yaml" "$repository" "$version" "$image_digest" <<'EOF'
import re, sys
import yaml

path, repository, tag, digest = sys.argv[1:]
text = open(path).read()
block = re.search(r"^image:\n(?:(?:  .*)?\n)+", text, re.M)
assert block, "no image: block in values.yaml"
pinned = block.group(0)
for key, value in (("repository", repository), ("tag", tag), ("digest", digest)):
    pinned, count = re.subn(rf"^  {key}: .*$", f'  {key}: "{value}"', pinned, count=1, flags=re.M)
    assert count == 1, f"image.{key} not found in values.yaml"
text = text[: block.start()] + pinned + text[block.end() :]
image = yaml.safe_load(text)["image"]
assert (image["repository"], image["tag"], image["digest"]) == (repository, tag, digest), image
open(path, "w").write(text)
EOF
  rendered=$("$helm" template merge-job "$work/chart" --set config.endpoint=https://opensearch.invalid:9200 \
    | sed -n 's/^ *image: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | sort -u)
  # repository@digest, or repository:tag@digest: the digest decides what runs either way.
  case "$rendered" in
    "$repository@$image_digest" | "$repository:$version@$image_digest") ;;
    *) die "the packaged chart would run ${rendered:-no image}, not $repository@$image_digest" ;;
  esac
  "$helm" package "$work/chart" --destination "$work" >/dev/null
  log "pushing chart merge-job $chart_version to $chart_repo"
  helm_oci push "$work/merge-job-$chart_version.tgz" "$chart_repo" "${helm_tls[@]}" >&2
fi
chart_digest="sha256:$(skopeo_inspect --raw "docker://$registry/charts/merge-job:$chart_version" | sha256sum | cut -d' ' -f1)"

# --- SBOM and signature ----------------------------------------------------------------------


"$cosign" public-key --key "$COSIGN_KEY" >"$work/cosign.pub"
# A signing configuration with no service and an empty trusted root, both made by cosign:
# with a key pair nothing is sent to a transparency log, a timestamp authority or
# Sigstore's TUF repository (cosign would otherwise fetch its trusted root from there).
export TUF_ROOT="$work/tuf"
"$cosign" signing-config create --out "$work/signing-config.json"
"$cosign" trusted-root create --out "$work/trusted-root.json"
subject="$repository@$image_digest"
verify_opts=(--key "$work/cosign.pub" --insecure-ignore-tlog=true "${cosign_tls[@]}")
sign_opts=(--key "$COSIGN_KEY" --yes --signing-config "$work/signing-config.json"
  --trusted-root "$work/trusted-root.json" "${cosign_tls[@]}")

# `cosign verify` accepts any bundle the key signed for the image, the SBOM attestation
# included: the image counts as signed only with a claim of cosign's signature type.
signed() {
  "$cosign" verify "${verify_opts[@]}" "$subject" 2>/dev/null | python3 -c '
import json, sys
claims = json.loads(sys.stdin.read() or "[]")
sys.exit(0 if any(c["critical"]["type"] == "https://sigstore.dev/cosign/sign/v1" for c in claims) else 1)'
}
if signed; then
  log "$subject is signed and the signature verifies"
else
  log "signing $subject"
  "$cosign" sign "${sign_opts[@]}" "$subject" >&2
fi

log "making the SBOM of $subject"
# The SBOM tools' own environment (.venv-release) is made by install-release-tools.sh above.
.venv-release/bin/python scripts/sbom.py --local-image "$local_image" --image "$image" \
  --digest "$image_digest" --output "$work/sbom.json"
# The same SBOM attested and verifying already: nothing to add.
if "$cosign" verify-attestation "${verify_opts[@]}" --type cyclonedx "$subject" \
  >"$work/attestations.json" 2>/dev/null \
  && .venv/bin/python - "$work/attestations.json" "$work/sbom.json" <<'EOF'
import base64, json, sys

attestations, sbom = sys.argv[1:]
wanted = json.load(open(sbom))
for line in open(attestations):
    statement = json.loads(base64.b64decode(json.loads(line)["payload"]))
    if statement["predicate"] == wanted:
        sys.exit(0)
sys.exit(1)
EOF
then
  log "the SBOM of $subject is attached and verifies"
else
  log "attaching the SBOM to $subject (cosign attest --type cyclonedx)"
  "$cosign" attest "${sign_opts[@]}" --type cyclonedx --predicate "$work/sbom.json" "$subject" >&2
fi

# --- what is in the registry ---------------------------------------------------------------

# The image's referrers by predicate type, whether the registry answers the OCI referrers
# API or cosign used the referrers tag: the signature and the SBOM attestation.
referrer() {
  "$cosign" tree "${cosign_tls[@]}" "$subject" 2>/dev/null \
    | sed -n "s|.* $1 artifacts via OCI referrer: \([^ ]*\)$|\1|p" | tail -n 1
}
signature=$(referrer https://sigstore.dev/cosign/sign/v1)
sbom=$(referrer https://cyclonedx.org/bom)
[ -n "$signature" ] || die "no signature of $subject found in the registry"
[ -n "$sbom" ] || die "no SBOM attestation of $subject found in the registry"

summary=$(python3 - "$version" "$image" "$image_digest" "$chart" "$chart_version" "$chart_digest" \
  "$sbom" "$signature" <<'EOF'
import json, sys

version, image, image_digest, chart, chart_version, chart_digest, sbom, signature = sys.argv[1:]
print(json.dumps({
    "version": version,
    "image": image,
    "image_digest": image_digest,
    "chart": chart,
    "chart_version": chart_version,
    "chart_digest": chart_digest,
    "sbom": sbom,
    "sbom_digest": sbom.rpartition("@")[2],
    "signature": signature,
    "signature_digest": signature.rpartition("@")[2],
}, indent=2))
EOF
)
[ -z "$output" ] || echo "$summary" >"$output"
cat <<EOF
image      $image@$image_digest
chart      $chart:$chart_version@$chart_digest
           helm install merge-job $chart --version $chart_version
sbom       $sbom (CycloneDX, $(wc -c <"$work/sbom.json") bytes, attested with cosign)
signature  $signature
verify     cosign verify --key cosign.pub --insecure-ignore-tlog=true $subject
EOF

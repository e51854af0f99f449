"""The CycloneDX SBOM of a merge-job image: what scripts/release.sh attaches to the image.

    .venv/bin/python scripts/sbom.py --local-image merge-job:src-<hash> \\
        --image HOST:PORT/PATH/merge-job:<version> --digest sha256:<hex> --output sbom.json

The image holds exactly the locked runtime packages (requirements/runtime.txt, installed
with --require-hashes) on a Debian base. So the SBOM is made of:
- the Python packages: cyclonedx-py reads the locked requirements, with every file hash;
  merge-job itself (from pyproject.toml) is the application component;
- the Debian packages: read from the image's own dpkg database (dpkg-query inside the
  image, no network), and the operating system from its /etc/os-release;
- the image as the SBOM's subject: a container component named by its digest.

cyclonedx-python-lib merges them and validates the result against the CycloneDX 1.6 schema.
The document depends only on the image: its serial number derives from the digest and its
timestamp is the image's creation time, so a release re-run produces the same SBOM.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

REPO = Path(__file__).resolve().parents[1]
DPKG_FORMAT = "${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\n"


def in_image(image: str, *command: str) -> str:
    """Run a read-only command in the image, without network."""
    return subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            command[0],
            image,
            *command[1:],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def python_bom() -> Bom:
    """cyclonedx-py's SBOM of the locked runtime requirements (reads no index)."""
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "python.json"
        subprocess.run(
            [
                str(Path(sys.executable).parent / "cyclonedx-py"),
                "requirements",
                str(REPO / "requirements" / "runtime.txt"),
                "--pyproject",
                str(REPO / "pyproject.toml"),
                "--output-reproducible",
                "--output-file",
                str(output),
            ],
            check=True,
            capture_output=True,
        )
        bom: Bom = Bom.from_json(json.loads(output.read_text()))
        return bom


def debian_components(image: str) -> list[Component]:
    """The operating system and every installed Debian package of the image."""
    release = {
        key: value.strip('"')
        for key, _, value in (
            line.partition("=") for line in in_image(image, "cat", "/etc/os-release").splitlines()
        )
    }
    distro_id = release["ID"]
    distro = f"{distro_id}-{release['VERSION_ID']}"
    components = [
        Component(
            type=ComponentType.OPERATING_SYSTEM,
            name=distro_id,
            version=release["VERSION_ID"],
            description=release.get("PRETTY_NAME"),
            bom_ref=f"os:{distro}",
        )
    ]
    for line in in_image(image, "dpkg-query", "-W", "-f", DPKG_FORMAT).splitlines():
        status, name, version, arch = line.split("\t")
        if not status.startswith("ii"):
            continue  # removed or half-installed: not in the image
        purl = PackageURL(
            type="deb",
            namespace=distro_id,
            name=name,
            version=version,
            qualifiers={"arch": arch, "distro": distro},
        )
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=name,
                version=version,
                purl=purl,
                bom_ref=purl.to_string(),
            )
        )
    return components


def image_bom(local_image: str, image: str, digest: str) -> Bom:
    repository, _, tag = image.rpartition(":")
    bom = python_bom()
    application = bom.metadata.component
    if application is None:
        raise SystemExit("cyclonedx-py gave no root component (pyproject.toml not read)")
    created = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Created}}", local_image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subject = Component(
        type=ComponentType.CONTAINER,
        name=repository.rsplit("/", 1)[-1],
        version=tag,
        purl=PackageURL(
            type="oci",
            name=repository.rsplit("/", 1)[-1],
            version=digest,
            qualifiers={"repository_url": repository, "tag": tag},
        ),
        bom_ref=f"{repository}@{digest}",
    )
    bom.metadata.component = subject
    bom.metadata.timestamp = datetime.fromisoformat(created)
    bom.serial_number = uuid.uuid5(uuid.NAMESPACE_URL, f"{repository}@{digest}")
    bom.components.add(application)
    debian = debian_components(local_image)
    bom.components.update(debian)
    bom.register_dependency(subject, [application, *debian])
    return bom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local-image", required=True, help="the image in the Docker engine")
    parser.add_argument("--image", required=True, help="its registry reference, REPOSITORY:TAG")
    parser.add_argument("--digest", required=True, help="its manifest digest in the registry")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()
    document = JsonV1Dot6(image_bom(args.local_image, args.image, args.digest)).output_as_string(
        indent=2
    )
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(document)
    if error is not None:
        raise SystemExit(f"the SBOM is not valid CycloneDX 1.6: {error}")
    args.output.write_text(document + "\n")


if __name__ == "__main__":
    main()

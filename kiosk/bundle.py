"""The first-boot bundle: the files ``kiosk-fleet provision`` writes for the boot partition and
``kiosk firstboot`` installs, and where the kiosk finds them. Standard library only.

Its own module because three programs share this contract (provisioning on the central side,
first boot and the out-of-order screen on the kiosk) and none of them may import another.
"""

from pathlib import Path, PurePosixPath

CONFIG_NAME = "kiosk.toml"
BOOT_DIR = Path("/boot/firmware")
DATA_DIR = "/var/lib/kiosk"  # the persistent data partition's mount point: root's
STATE_DIR = PurePosixPath(DATA_DIR, "state")  # storage.data_dir's default: the kiosk user's folder
#: First boot's refusal, on the data partition; the out-of-order screen shows its first line.
PROBLEMS_NAME = "firstboot-problems.txt"
CREDENTIALS_RUN_DIR = "/run/credentials/kiosk.service"
# Boot-partition file name -> installed name under /etc/kiosk/credentials.
CREDENTIALS = {
    "mqtt-password": "password",
    "mqtt-client.crt": "client.crt",
    "mqtt-client.key": "client.key",
    "mqtt-ca.crt": "ca.crt",
}


def credential_path(boot_name):
    """The path a kiosk.toml names for a credential shipped as ``boot_name``."""
    return f"{CREDENTIALS_RUN_DIR}/mqtt_{CREDENTIALS[boot_name]}"

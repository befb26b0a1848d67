#!/bin/sh
# The image's configuration, run inside the VM (arm64 or armhf) right after the debootstrap
# second stage (scripts/vm/initramfs-init, meter_vm=setup), chrooted into it.
# Everything else a gateway needs (mosquitto, the agent's libraries, ctest) was
# installed by debootstrap from the packages the host downloaded.
set -eu
echo gateway >/etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 gateway\n' >/etc/hosts
echo '/dev/vda / ext4 defaults 0 1' >/etc/fstab
# The VM's only network: qemu's user-mode network, restricted (no way out but
# the forwarded port to the host's central; scripts/vm-test.sh).
cat >/etc/systemd/network/50-vm.network <<'NET'
[Match]
Name=en*
[Network]
DHCP=ipv4
NET
systemctl enable systemd-networkd.service
# What the test run does: the host's checks from its 9p share (scripts/vm/run).
install -m 0755 /vm-run /usr/local/sbin/meter-vm-run
cat >/etc/systemd/system/meter-vm-run.service <<'UNIT'
[Unit]
Description=vm-test: the checks the host shares over 9p, then power off
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/meter-vm-run
StandardOutput=journal+console
StandardError=journal+console
[Install]
WantedBy=multi-user.target
UNIT
systemctl enable meter-vm-run.service
# Nothing that runs by itself during a test: apt's timers, man-db's.
systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer \
  fstrim.timer 2>/dev/null || true
passwd -d root
apt-get clean
rm -f /vm-run /setup-image.sh

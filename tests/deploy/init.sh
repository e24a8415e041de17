#!/bin/sh
# First /init of the arm64 deployment VM (built by tests/deploy/vm.sh), run
# before systemd: finishes the Debian root filesystem (debootstrap's second
# stage: the packages are configured by their own arm64 maintainer scripts),
# installs the vipnas package the way a user does (`apt-get install ./….deb`),
# points its service at the VM's camera and hands over to systemd, which
# boots the system; tests/deploy/check.sh (a unit) then tests the service.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "deploy-vm [$(cut -d' ' -f1 /proc/uptime) s]: $*" > /dev/console; }
fail() { say "FAIL: $*"; echo o > /proc/sysrq-trigger; sleep 60; }

say "debootstrap second stage"
/debootstrap/debootstrap --second-stage > /root/second-stage.log 2>&1 \
  || { tail -20 /root/second-stage.log > /dev/console; fail "debootstrap --second-stage"; }
# It unmounts /proc when it is done.
mountpoint -q /proc || mount -t proc proc /proc
rm -rf /var/cache/apt/archives/*.deb
echo "stage2_s=$(cut -d' ' -f1 /proc/uptime)" > /root/timing.txt
echo deploy-vm > /etc/hostname

say "installing $(ls /root/*.deb)"
# Not started by its postinst here (no systemd running yet): it starts at boot.
apt-get install -y -q /root/vipnas_*.deb > /root/install.log 2>&1 \
  || { tail -20 /root/install.log > /dev/console; fail "apt-get install"; }
echo "installed_s=$(cut -d' ' -f1 /proc/uptime)" >> /root/timing.txt

# The VM's camera is vivid at 320x240 (software emulation runs the model at a
# frame or two a second); everything else is the package's own configuration.
sed -i 's|^source = .*|source = "v4l:/dev/video0@320x240"|' /etc/vipnas/vipnas.toml
printf 'vivid\n' > /etc/modules-load.d/vivid.conf
printf 'options vivid node_types=0x1 num_inputs=1 input_types=0x0\n' > /etc/modprobe.d/vivid.conf

# The checks run as a unit once the system is up; the serial console is theirs
# (no login prompt on it).
ln -sf /dev/null /etc/systemd/system/serial-getty@ttyAMA0.service
cat > /etc/systemd/system/deploy-check.service <<UNIT
[Unit]
Description=vipnas deployment checks
After=vipnas.service
[Service]
Type=oneshot
ExecStart=/bin/sh /root/check.sh
StandardOutput=journal+console
UNIT
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sf /etc/systemd/system/deploy-check.service /etc/systemd/system/multi-user.target.wants/

say "booting systemd"
exec /sbin/init

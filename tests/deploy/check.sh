#!/bin/sh
# The deployment checks, run inside the arm64 VM by systemd once it has booted
# with the vipnas package installed (tests/deploy/init.sh set this up). Each
# check prints `PASS name` or `FAIL name: why` into /root/out/report.txt; the
# journal, the poses and the timings go beside it. At the end /root/out goes
# back to the host as a base64 tar between two marker lines on the console,
# and the VM powers off.
out=/root/out
mkdir -p $out
cd $out
uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "deploy-vm [$(uptime_s) s]: $*" > /dev/console; }
pass() { echo "PASS $1" >> report.txt; say "PASS $1"; }
fail() { echo "FAIL $1: $2" >> report.txt; say "FAIL $1: $2"; }
check() { name=$1; shift; if "$@"; then pass "$name"; else fail "$name" "$*"; fi; }
# What the checks after it need: on failure, report at once.
need() { name=$1; shift; if "$@"; then pass "$name"; else fail "$name" "$*"; finish; fi; }
poses=/var/lib/vipnas/poses.jsonl
lines() { if [ -f $poses ]; then wc -l < $poses; else echo 0; fi; }
# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  t=$1; shift; i=0
  until "$@"; do
    i=$((i + 1)); [ $i -gt $((t * 2)) ] && return 1
    sleep 0.5
  done
}
lines_at_least() { [ "$(lines)" -ge "$1" ]; }
# Waits up to $2 seconds for poses.jsonl to reach $1 lines.
wait_lines() { wait_for "$2" lines_at_least "$1"; }
# poses.jsonl.1 holds at least $1 lines.
rotated_with() { [ -f $poses.1 ] && [ "$(wc -l < $poses.1)" -ge "$1" ]; }
main_pid() { systemctl show -p MainPID --value vipnas; }
# The service's journal holds a line matching $1.
logged() { journalctl -u vipnas --no-pager -o cat | grep -q "$1"; }
same_pid() { [ "$(main_pid)" = "$1" ]; }
new_pid() { [ "$(main_pid)" != "$1" ]; }
# Sends /root/out back (base64 tar between two marker lines on the console) and powers off.
finish() {
  journalctl -u vipnas --no-pager -o short-monotonic > journal.txt 2>&1
  [ -f poses.jsonl ] || cp $poses poses.jsonl 2>/dev/null
  echo "done_s=$(uptime_s)" >> timing.txt
  echo DONE >> report.txt
  echo "==== RESULTS BEGIN ====" > /dev/console
  tar -c . | gzip | base64 > /dev/console
  echo "==== RESULTS END ====" > /dev/console
  sync
  systemctl poweroff --force --force
  exit 0
}
cat /root/timing.txt > timing.txt

# 1. Started at boot, as its own user, in the video group, capturing.
need enabled systemctl -q is-enabled vipnas
need first-pose wait_lines 1 300
echo "first_pose_s=$(uptime_s)" >> timing.txt
check active systemctl -q is-active vipnas
pid=$(main_pid)
check runs-as-vipnas grep -q "^Uid:[[:space:]]*$(id -u vipnas)[[:space:]]" /proc/$pid/status
check video-group sh -c "id -nG vipnas | grep -qw video"
check pose-line grep -q '"keypoints":\[\[' $poses
# 2. The live copy: another program reads the same lines from the named pipe.
check live-fifo test -p /run/vipnas/poses
timeout 120 head -n 2 /run/vipnas/poses > live.txt
check live-lines sh -c "[ \$(grep -c '\"keypoints\"' live.txt) -eq 2 ]"
# 3. systemctl restart: a new process, the last run's poses kept (rotated), new poses.
before=$(lines)
systemctl restart vipnas
check restarted new_pid "$pid"
# (The new process rotates once its model is loaded: wait for it.)
need rotated-on-restart wait_for 300 rotated_with "$before"
check poses-after-restart wait_lines 3 300
check summary-in-journal logged 'frames=.*in_budget='
# 4. The camera disconnects (vivid's USB-unplug emulation): the same process reconnects.
pid=$(main_pid)
n=$(lines)
vipnas camera /dev/video0 --set Disconnect > disconnect.txt 2>&1
check poses-after-disconnect wait_lines $((n + 3)) 300
check same-process-after-disconnect same_pid "$pid"
check reconnect-logged logged reconnected
# 5. No camera at start: the service waits, logging why, and captures once it is back.
systemctl stop vipnas
modprobe -r vivid
systemctl start vipnas
sleep 20
check waits-without-camera systemctl -q is-active vipnas
check wait-logged logged 'waiting for'
modprobe vivid
check poses-once-camera-back wait_lines 2 300
cp $poses poses.jsonl
# 6. Removal stops the service and takes the files; purge takes config and poses.
apt-get remove -y -q vipnas > remove.log 2>&1
check removed sh -c "! test -e /usr/bin/vipnas && ! test -e /usr/share/vipnas && ! systemctl -q is-active vipnas"
check config-kept-until-purge test -f /etc/vipnas/vipnas.toml
apt-get purge -y -q vipnas > purge.log 2>&1
check purged sh -c "! test -e /etc/vipnas && ! test -e /var/lib/vipnas && ! dpkg -s vipnas >/dev/null 2>&1"
finish

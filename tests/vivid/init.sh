#!/bin/busybox sh
# /init of the vivid test VM (built by tests/vivid/vm.sh): loads the `vivid`
# virtual camera, runs vipnas against it (formats, snapshots, bad format
# requests, a 100-frame run with faults injected through vivid's controls),
# then sends /out back as base64 tar on the second serial port and powers off.
/bin/busybox --install -s /bin
export PATH=/bin HOME=/ RUST_LOG=info
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
cd /out
say() { echo "vivid-vm [$(cut -d' ' -f1 /proc/uptime) s]: $*" > /dev/console; }
say "init started"
echo "boot_s=$(cut -d' ' -f1 /proc/uptime)" > boot.txt

# Modules in dependency order. insmod ignores vivid.* on the kernel command
# line: its options go here. One webcam-like input, only /dev/video0.
for m in $(cat /modules.order); do
  opts=""
  [ "$m" = vivid.ko ] && opts="node_types=0x1 num_inputs=1 input_types=0x0"
  insmod "/lib/modules/$m" $opts || echo "insmod $m failed" >> boot.txt
done
echo "modules_s=$(cut -d' ' -f1 /proc/uptime)" >> boot.txt
ls /dev/video* >> boot.txt 2>&1

say "modules loaded: $(ls /dev/video* 2>&1)"

# What the device offers.
vipnas camera /dev/video0 > camera.txt 2>&1
echo $? > camera.rc

say "camera listed (rc $(cat camera.rc))"

# Each format vipnas decodes and vivid offers, through the capture path of `run`.
for f in YUYV RGB3; do
  vipnas camera "/dev/video0@640x480:$f" --snapshot "snap_$f.png" > "snap_$f.txt" 2>&1
  echo $? > "snap_$f.rc"
done

say "snapshots taken"

# Format requests that must fail clearly: one vivid does not offer, one vipnas does not decode.
for f in MJPG H264; do
  vipnas run --model /model --source "v4l:/dev/video0:$f" --frames 3 --out /tmp/bad > "bad_$f.txt" 2>&1
  echo $? > "bad_$f.rc"
done

say "bad format requests done"

# The main run, with faults injected from a second handle as frames arrive.
lines() { if [ -f run/poses.jsonl ]; then wc -l < run/poses.jsonl; else echo 0; fi; }
wait_for() {
  i=0
  while [ "$(lines)" -lt "$1" ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    i=$((i + 1))
    [ $i -gt 600 ] && return 1
    sleep 0.2
  done
}
fault() { say "frame $(lines): $1"; vipnas camera /dev/video0 --set "$1" >> faults.log 2>&1 || echo "fault $1 failed" >> faults.log; }

vipnas run --model /model --source v4l:/dev/video0@640x480 --frames 100 --fps 2 --threads 1 --no-smooth \
  --out run > run.txt 2> run.log &
pid=$!
# A hung run is killed (and fails the test) rather than hanging the VM.
(sleep 150; kill "$pid" 2>/dev/null && echo "watchdog killed the run" >> faults.log) &
wait_for 10 && fault "Percentage of Dropped Buffers=30"
wait_for 28 && fault "Percentage of Dropped Buffers=0"
wait_for 30 && fault "Inject V4L2_BUF_FLAG_ERROR"
wait_for 40 && fault "Inject Fatal Streaming Error"
wait_for 50 && fault "Inject VIDIOC_QBUF Error"
# The next STREAMON is the one after the reopen that follows the disconnect.
wait_for 60 && fault "Inject VIDIOC_STREAMON Error" && fault "Disconnect"
wait "$pid"
echo $? > run.rc
say "run done (rc $(cat run.rc))"
echo "done_s=$(cut -d' ' -f1 /proc/uptime)" >> boot.txt

tar -c . | base64 > /dev/ttyS1
say "results sent"
sync
poweroff -f
echo o > /proc/sysrq-trigger

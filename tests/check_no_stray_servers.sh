#!/bin/sh
# Fails when a nats-server started by this build's tests (its folders carry the tag) still runs.
tag="$1"
found=0
for d in /proc/[0-9]*; do
  cmd=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null) || continue
  case "$cmd" in
    *nats-server*"natbus-test-$tag-"*) echo "stray nats-server: pid ${d#/proc/}: $cmd"; found=1 ;;
  esac
done
if [ "$found" -ne 0 ]; then exit 1; fi
echo "no nats-server of this test run is left running (tag $tag)"

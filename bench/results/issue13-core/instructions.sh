#!/bin/bash
# usage: ir.sh binary pattern -> instructions per op (difference of 20000 and 120000 iterations)
ir() { for t in 1 2 3 4; do v=$(GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out.$$ "$1" -test.run xxx -test.bench "$2" -test.benchtime ${3}x -test.cpu 1 2>&1 | grep -o "Collected : [0-9]*" | awk '{print $3}'); rm -f /tmp/cg.out.$$; [ -n "$v" ] && { echo $v; return; }; done; echo 0; }
a=$(ir $1 "$2" 20000); b=$(ir $1 "$2" 120000)
echo "$1 $2 $(( (b - a) / 100000 )) instr/op"

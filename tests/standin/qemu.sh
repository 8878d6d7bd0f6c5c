#!/bin/bash
# A stand-in for qemu-system-x86_64 in vminit's lifecycle tests, exec'd by record.c (which
# records the signal mask and descriptors vminit gave it): records its argv and the signals it
# receives into $STANDIN_LOG, then behaves as $STANDIN_MODE says:
#   exit:N      exit with status N
#   signal:SIG  kill itself with SIG
#   orphans:N   leave N orphans that all exit at once, then report the zombies left and exit 0
#   wait        run until killed
#   qmp-stuck   become $STANDIN_STUCK_QMP listening on the first -qmp socket, never accepting
#               (a QEMU whose main loop is held up), until killed
log=${STANDIN_LOG:?}
{
	echo "argv $*"
	echo "started"
} >>"$log"

for sig in HUP INT QUIT USR1 USR2 TERM WINCH ALRM PIPE CONT; do
	trap "echo received $sig >>'$log'" "$sig"
done

case "${STANDIN_MODE:-wait}" in
exit:*) exit "${STANDIN_MODE#exit:}" ;;
signal:*)
	sig=${STANDIN_MODE#signal:}
	trap - "$sig"
	kill -s "$sig" $$
	;;
orphans:*)
	n=${STANDIN_MODE#orphans:}
	for _ in $(seq "$n"); do
		# The subshell exits at once: the sleeper's parent becomes PID 1 (vminit).
		(sleep 0.5 &)
	done
	sleep 2
	zombies=0
	sleepers=0
	for stat in /proc/[0-9]*/stat; do
		read -r _ comm state _ <"$stat" 2>/dev/null || continue
		[ "$state" = Z ] && zombies=$((zombies + 1))
		[ "$comm" = "(sleep)" ] && sleepers=$((sleepers + 1))
	done
	echo "zombies $zombies sleepers $sleepers" >>"$log"
	exit 0
	;;
qmp-stuck)
	qmp=
	prev=
	for arg in "$@"; do
		if [ "$prev" = -qmp ] && [ -z "$qmp" ]; then
			qmp=${arg#unix:}
			qmp=${qmp%%,*}
		fi
		prev=$arg
	done
	echo "qmp $qmp" >>"$log"
	exec "${STANDIN_STUCK_QMP:?}" "$qmp"
	;;
wait)
	while :; do
		sleep 0.2 &
		wait $!
	done
	;;
esac

import CSupport
#if canImport(Glibc)
import Glibc
#endif

// The floor of a Swift PID 1, for `make bench-boot`: the smallest static Swift /init that does what
// the C baseline does (one console line, then power off). CSupport's constructor mounts /proc
// before the Swift runtime starts, as it does for the agent; the line says it ran.
_ = cocoon_early_proc_mounted()
let line = Array("cocoon-swift-baseline: init started\n".utf8)
_ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
sync()
_ = cocoon_reboot(1)  // QEMU runs with -no-reboot: this ends it
while true { pause() }

import ContainerdAPI
import Foundation
import LinuxContainer
import SystemCalls

/// containerd hands a runtime v2 shim the container's root filesystem as mounts (the snapshotter's
/// overlay, or a bind) for the shim to mount at `<bundle>/rootfs`. The shim daemon runs in a mount
/// namespace of its own, so these mounts vanish with it however it ends.
enum RootfsMounts {
    static func mount(_ mounts: [Containerd_Types_Mount], at target: String) throws(ShimError) {
        var done: [String] = []
        for (i, m) in mounts.enumerated() {
            let options = MountOptions(m.options)
            var flags = options.flags
            let bindReadOnly = options.isBind && options.isReadOnly
            if bindReadOnly { flags &= ~UInt(MS_RDONLY) }
            let data = options.dataString
            let type = m.type.isEmpty || options.isBind ? "none" : m.type
            let rc = Glibc.mount(m.source, target, type, flags, data)
            guard rc == 0 else {
                let e = errno
                for t in done.reversed() { umount2(t, Int32(MNT_DETACH)) }
                throw ShimError(.internal, "rootfs[\(i)]: mount \(m.type) \(m.source) on \(target): \(String(cString: strerror(e)))"
                    + (data.map { $0.utf8.count >= 4096 ? " (options longer than a page: \($0.utf8.count) bytes)" : "" } ?? ""))
            }
            done.append(target)
            if bindReadOnly {
                _ = Glibc.mount("none", target, "none", UInt(MS_BIND | MS_REMOUNT | MS_RDONLY), nil)
            }
            for p in options.propagation { _ = Glibc.mount("none", target, nil, p, nil) }
        }
    }

    /// Unmounts every layer stacked at `target`; nothing there is fine.
    static func unmount(_ target: String) {
        for _ in 0..<16 {
            if umount2(target, Int32(MNT_DETACH) | Int32(UMOUNT_NOFOLLOW)) != 0 { return }
        }
    }
}

import CSupport
import Logging
import Processes
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// The duties of PID 1 in the guest: the file systems a container runtime needs, and reaping.
/// Failures are logged and survived: PID 1 exiting panics the guest.
public enum GuestInit {
    struct MountPoint {
        let source: String, target: String, type: String, flags: UInt, data: String?
    }

    static let essentialMounts: [MountPoint] = [
        .init(source: "sysfs", target: "/sys", type: "sysfs", flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), data: nil),
        .init(source: "devtmpfs", target: "/dev", type: "devtmpfs", flags: UInt(MS_NOSUID), data: "mode=0755"),
        .init(source: "devpts", target: "/dev/pts", type: "devpts", flags: UInt(MS_NOSUID | MS_NOEXEC),
              data: "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        .init(source: "shm", target: "/dev/shm", type: "tmpfs", flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=1777"),
        .init(source: "tmpfs", target: "/run", type: "tmpfs", flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=0755"),
        .init(source: "tmpfs", target: "/tmp", type: "tmpfs", flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=1777"),
        .init(source: "cgroup2", target: "/sys/fs/cgroup", type: "cgroup2", flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC),
              data: "nsdelegate"),
    ]

    public static func mountEssentials(logger: Logger) {
        if cocoon_early_proc_mounted() == 0 && !Files.exists("/proc/self") {
            logger.error("/proc is not mounted; the early constructor could not mount it")
        }
        leaveInitramfsRoot(logger: logger)
        for m in essentialMounts {
            mkdir(m.target, 0o755)
            let r = m.data.map { mount(m.source, m.target, m.type, m.flags, $0) } ?? mount(m.source, m.target, m.type, m.flags, nil)
            if r != 0 && errno != EBUSY {
                logger.error("mount \(m.type) on \(m.target) failed", metadata: ["error": "\(String(cString: strerror(errno)))"])
            }
        }
        symlink("/proc/self/fd", "/dev/fd")
        symlink("pts/ptmx", "/dev/ptmx")
        // Containers without a network namespace of their own (a pod's host-network containers)
        // share the guest's, whose loopback the kernel leaves down.
        if cocoon_loopback_up() != 0 {
            logger.error("cannot set the guest's loopback up", metadata: ["error": "\(String(cString: strerror(errno)))"])
        }
    }

    /// pivot_root refuses to move away from the initramfs's rootfs (it has no parent mount), so a
    /// container could not use it. switch_root's move: the same tree, bound on itself and moved
    /// over /, becomes a mount with a parent; containers' mount namespaces copy that.
    static func leaveInitramfsRoot(logger: Logger) {
        // Booted from the read-only image, / is a real mount already: nothing to do.
        guard let type = rootFilesystemType(), ["rootfs", "ramfs", "tmpfs"].contains(type) else { return }
        mkdir("/.root", 0o700)
        guard mount("/", "/.root", nil, UInt(MS_BIND) | UInt(MS_REC), nil) == 0 else {
            logger.error("bind / for containers' pivot_root failed", metadata: ["error": "\(String(cString: strerror(errno)))"])
            return
        }
        guard chdir("/.root") == 0, mount("/.root", "/", nil, UInt(MS_MOVE), nil) == 0, chroot(".") == 0, chdir("/") == 0 else {
            logger.error("moving the root mount failed", metadata: ["error": "\(String(cString: strerror(errno)))"])
            return
        }
    }

    /// The file system mounted on / (the last mount there), from /proc/self/mountinfo: its type, its
    /// block device's major:minor, and whether the mount is read-only.
    static func rootMount() -> (type: String, device: String, readOnly: Bool)? {
        let lines = ((try? Files.readString("/proc/self/mountinfo")) ?? "").split(separator: "\n")
        for line in lines.reversed() {
            let halves = line.split(separator: " - ", maxSplits: 1)
            let fields = halves.first?.split(separator: " ") ?? []
            guard halves.count == 2, fields.count >= 6, fields[4] == "/" else { continue }
            let type = halves[1].split(separator: " ").first.map(String.init) ?? ""
            return (type, String(fields[2]), fields[5].split(separator: ",").contains("ro"))
        }
        return nil
    }

    static func rootFilesystemType() -> String? { rootMount()?.type }

    /// Whether `file` lives on a read-only root whose disk is read-only too (QEMU's readonly=on: the
    /// kernel refuses to remount it writable), so that nothing in the guest can change it.
    public static func rootIsReadOnlyDisk(containing file: String) -> Bool {
        guard let root = rootMount(), root.type == "ext4", root.readOnly, file.hasPrefix("/") else { return false }
        var st = stat()
        guard stat(file, &st) == 0 else { return false }
        // glibc's major()/minor() are macros: the kernel's dev_t encoding, spelled out.
        let dev = UInt64(st.st_dev)
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
        guard "\(major):\(minor)" == root.device else { return false }
        return (try? Files.readString("/sys/dev/block/\(root.device)/ro"))?.hasPrefix("1") == true
    }

    /// Reaps orphans (children a ChildProcess owns are reaped by their owner). SIGCHLD was blocked process-wide by the C constructor
    /// before any thread started, so sigwait here is the only place it is taken.
    public static func startReaper(logger: Logger) {
        do {
            try startDetachedThread {
                var set = sigset_t()
                sigemptyset(&set)
                sigaddset(&set, SIGCHLD)
                var timeout = timespec(tv_sec: 1, tv_nsec: 0)
                while true {
                    // SIGCHLD, or a second's pause: signals coalesce, so a periodic pass catches any missed.
                    _ = sigtimedwait(&set, nil, &timeout)
                    let n = ChildRegistry.shared.reapOrphans()
                    if n > 0 { logger.trace("reaped orphans", metadata: ["count": "\(n)"]) }
                }
            }
        } catch {
            logger.error("cannot start the reaper thread: \(error.message)")
        }
    }

    /// Powers the guest off: QEMU runs with -no-reboot, so a reboot ends it.
    public static func powerOff(logger: Logger) -> Never {
        logger.info("shutting down")
        sync()
        _ = cocoon_reboot(1)
        // reboot() only returns on failure; PID 1 must not exit, so wait to be killed.
        logger.error("reboot failed", metadata: ["error": "\(String(cString: strerror(errno)))"])
        while true { pause() }
    }
}

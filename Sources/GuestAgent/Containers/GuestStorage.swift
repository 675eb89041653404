import AgentAPI
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// Filesystems the host shares into the guest: the virtio-fs or 9p share that holds the containers'
/// root filesystems and bind-mount sources.
enum GuestStorage {
    /// Mount options the host may ask for; anything else is refused rather than passed to the kernel.
    static let allowedOptions: Set<String> = ["ro", "rw", "nosuid", "nodev", "noexec", "relatime", "noatime"]

    static func mount(_ s: Cocoon_Agent_V1_Storage, field: String) throws(GuestAgentError) {
        guard s.mountPoint.hasPrefix("/run/cocoon/"), !s.mountPoint.split(separator: "/").contains("..") else {
            throw GuestAgentError(.invalidArgument, "\(field).mount_point must be under /run/cocoon/ without '..', got '\(s.mountPoint)'")
        }
        guard !s.source.isEmpty, s.source.utf8.count <= 255, !s.source.utf8.contains(UInt8(ascii: ",")) else {
            throw GuestAgentError(.invalidArgument, "\(field).source must be 1 to 255 bytes without ',', got '\(s.source)'")
        }
        var flags: UInt = 0
        for option in s.options {
            guard allowedOptions.contains(option) else {
                throw GuestAgentError(.invalidArgument, "\(field).options: '\(option)' is not one of \(allowedOptions.sorted().joined(separator: ", "))")
            }
            switch option {
            case "ro": flags |= UInt(MS_RDONLY)
            case "nosuid": flags |= UInt(MS_NOSUID)
            case "nodev": flags |= UInt(MS_NODEV)
            case "noexec": flags |= UInt(MS_NOEXEC)
            case "noatime": flags |= UInt(MS_NOATIME)
            default: break
            }
        }
        let data: String
        switch s.fstype {
        case "virtiofs": data = ""
        // msize: 9p's default of 8 KiB makes every large read a round trip per page.
        case "9p": data = "trans=virtio,version=9p2000.L,msize=524288,cache=mmap,access=client"
        default:
            throw GuestAgentError(.invalidArgument, "\(field).fstype '\(s.fstype)' is not supported; valid values: virtiofs, 9p")
        }
        do throws(SystemError) {
            try Files.makeDirectories(s.mountPoint, mode: 0o755)
        } catch {
            throw GuestAgentError(error.code, "\(field): create \(s.mountPoint): \(error.message)")
        }
        guard Glibc.mount(s.source, s.mountPoint, s.fstype, flags, data.isEmpty ? nil : data) == 0 else {
            let reason = String(cString: strerror(errno))
            throw GuestAgentError(.internal, "\(field): mount \(s.fstype) '\(s.source)' on \(s.mountPoint): \(reason)")
        }
    }

    static func unmountAll(under prefix: String) {
        let lines = ((try? Files.readString("/proc/self/mountinfo")) ?? "").split(separator: "\n")
        let points = lines.compactMap { line -> String? in
            let f = line.split(separator: " ")
            return f.count > 4 && f[4].hasPrefix(prefix) ? String(f[4]) : nil
        }
        for point in points.sorted(by: { $0.count > $1.count }) { umount2(point, Int32(MNT_DETACH)) }
    }
}

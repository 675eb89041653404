#if canImport(Glibc)
import Glibc
#endif

/// OCI mount options split into mount(2) flags, propagation changes, and the file-system data string.
public struct MountOptions: Equatable, Sendable {
    public var flags: UInt = 0
    /// Applied in a second mount(2) call: propagation cannot be combined with other flags.
    public var propagation: [UInt] = []
    /// Options passed to the file system (size=, mode=, uid=, ...).
    public var data: [String] = []
    public var isBind: Bool { flags & UInt(MS_BIND) != 0 }
    public var isRecursiveBind: Bool { isBind && flags & UInt(MS_REC) != 0 }
    public var isReadOnly: Bool { flags & UInt(MS_RDONLY) != 0 }

    public static let setting: [String: UInt] = [
        "ro": UInt(MS_RDONLY), "nosuid": UInt(MS_NOSUID), "nodev": UInt(MS_NODEV), "noexec": UInt(MS_NOEXEC),
        "sync": UInt(MS_SYNCHRONOUS), "dirsync": UInt(MS_DIRSYNC), "remount": UInt(MS_REMOUNT),
        "mand": UInt(MS_MANDLOCK), "noatime": UInt(MS_NOATIME), "nodiratime": UInt(MS_NODIRATIME),
        "bind": UInt(MS_BIND), "rbind": UInt(MS_BIND | MS_REC), "relatime": UInt(MS_RELATIME),
        "strictatime": UInt(MS_STRICTATIME), "silent": UInt(MS_SILENT), "lazytime": UInt(1 << 25),
    ]
    public static let clearing: [String: UInt] = [
        "rw": UInt(MS_RDONLY), "suid": UInt(MS_NOSUID), "dev": UInt(MS_NODEV), "exec": UInt(MS_NOEXEC),
        "async": UInt(MS_SYNCHRONOUS), "atime": UInt(MS_NOATIME), "diratime": UInt(MS_NODIRATIME),
        "norelatime": UInt(MS_RELATIME), "nostrictatime": UInt(MS_STRICTATIME), "nomand": UInt(MS_MANDLOCK),
        "defaults": 0,
    ]
    public static let propagationFlags: [String: UInt] = [
        "private": UInt(MS_PRIVATE), "rprivate": UInt(MS_PRIVATE | MS_REC),
        "shared": UInt(MS_SHARED), "rshared": UInt(MS_SHARED | MS_REC),
        "slave": UInt(MS_SLAVE), "rslave": UInt(MS_SLAVE | MS_REC),
        "unbindable": UInt(MS_UNBINDABLE), "runbindable": UInt(MS_UNBINDABLE | MS_REC),
    ]

    public init(_ options: [String]) {
        for option in options {
            if let f = Self.setting[option] {
                flags |= f
            } else if let f = Self.clearing[option] {
                flags &= ~f
            } else if let p = Self.propagationFlags[option] {
                propagation.append(p)
            } else if !option.isEmpty {
                data.append(option)
            }
        }
    }

    public var dataString: String? { data.isEmpty ? nil : data.joined(separator: ",") }
}

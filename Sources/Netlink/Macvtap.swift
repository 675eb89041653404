import CSupport
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

extension RouteSocket {
    /// A macvtap in passthru mode on `parent`: it takes over every frame the parent receives (the
    /// parent's own stack sees none, as with a tc redirect), sends through it, and has its MAC.
    public func addMacvtap(name: String, parent: Int32, mtu: UInt32) throws(NetlinkError) {
        var r = NetlinkRequest(type: Netlink.newLink, flags: Netlink.create | Netlink.excl, header: [UInt8](repeating: 0, count: 16))
        r.attributes.add(3, string: name)                         // IFLA_IFNAME
        r.attributes.add(5, uint32: UInt32(bitPattern: parent))   // IFLA_LINK
        r.attributes.add(4, uint32: mtu)                          // IFLA_MTU
        r.attributes.nested(18) { info in                         // IFLA_LINKINFO
            info.add(1, string: "macvtap")                        // IFLA_INFO_KIND
            info.nested(2) { data in                              // IFLA_INFO_DATA
                data.add(1, uint32: 8)                            // IFLA_MACVLAN_MODE: MACVLAN_MODE_PASSTHRU
            }
        }
        try execute(r, what: "create macvtap \(name) on link \(parent)")
    }
}

/// The character device of a macvtap. udev (or devtmpfs) names it /dev/tap<ifindex> in the host's
/// /dev, which is wrong for a macvtap in another namespace: ifindexes repeat across namespaces, and
/// the node of one hides the other's. So the device number is read from a sysfs of the macvtap's own
/// namespace, and the node is made where only this thread sees it.
public enum MacvtapDevice {
    /// Must run inside `NetworkNamespace.run`, on its thread, which it moves into a mount namespace of
    /// its own (the thread ends with the body). `scratch`: a directory this call may use (made and removed).
    /// Returns the open descriptor (close-on-exec); the caller owns it.
    public static func open(name: String, index: Int32, scratch: String) throws(NetlinkError) -> Int32 {
        func failed(_ step: String, _ e: Int32 = errno) -> NetlinkError {
            NetlinkError(NetlinkError.code(forErrno: e), "open macvtap \(name): \(step): \(String(cString: strerror(e)))")
        }
        guard cocoon_unshare(0x0002_0000) == 0 else { throw failed("unshare a mount namespace") }  // CLONE_NEWNS
        // Nothing mounted here reaches the host.
        guard mount(nil, "/", nil, UInt(MS_REC | MS_SLAVE), nil) == 0 else { throw failed("make / rslave") }
        guard mkdir(scratch, 0o700) == 0 else { throw failed("mkdir \(scratch)") }
        defer { rmdir(scratch) }
        // A tmpfs of its own: the directories of the run root are usually nodev.
        guard mount("tmpfs", scratch, "tmpfs", UInt(MS_NOSUID | MS_NOEXEC), "mode=0700") == 0 else { throw failed("mount tmpfs on \(scratch)") }
        defer { umount2(scratch, Int32(MNT_DETACH)) }
        let sys = scratch + "/sys"
        guard mkdir(sys, 0o700) == 0 else { throw failed("mkdir \(sys)") }
        guard mount("sysfs", sys, "sysfs", UInt(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), nil) == 0 else {
            throw failed("mount sysfs of its network namespace")
        }
        let devFile = "\(sys)/class/net/\(name)/macvtap/tap\(index)/dev"
        let text: String
        do throws(SystemError) { text = try Files.readString(devFile) } catch {
            umount2(sys, Int32(MNT_DETACH))
            throw NetlinkError(error.code, "open macvtap \(name): \(devFile.dropFirst(sys.count)): \(error.message)")
        }
        umount2(sys, Int32(MNT_DETACH))
        let numbers = (text.split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? "").split(separator: ":").compactMap { UInt32($0) }
        guard numbers.count == 2 else {
            throw NetlinkError(.internal, "open macvtap \(name): its sysfs dev file says '\(text)', not MAJOR:MINOR")
        }
        let node = scratch + "/tap"
        guard cocoon_mknod(node, UInt32(S_IFCHR) | 0o600, numbers[0], numbers[1]) == 0 else { throw failed("mknod \(numbers[0]):\(numbers[1])") }
        let fd = Glibc.open(node, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw failed("open its device \(numbers[0]):\(numbers[1])") }
        return fd
    }
}

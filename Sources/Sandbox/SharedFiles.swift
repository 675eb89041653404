import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// The host side of the shared directory: `<run dir>/shared/<container>/rootfs` and
/// `.../mounts/<n>` are bind mounts of the bundle's rootfs and of the spec's bind sources; the guest
/// sees the same tree at `/run/cocoon/shared`.
public enum SharedFiles {
    public static let tag = "cocoon"
    public static let guestMountPoint = "/run/cocoon/shared"

    /// The directory becomes a mount of its own with shared propagation, so that bind mounts made
    /// under it after virtiofsd started still reach virtiofsd's (slave) mount namespace. Next to it,
    /// a private staging mount where binds are made read-only before they enter the shared tree.
    static func prepare(_ path: String) throws(SandboxError) {
        for (dir, propagation) in [(path, MS_SHARED), (stagingPath(for: path), MS_PRIVATE)] {
            do throws(SystemError) {
                try Files.makeDirectories(dir, mode: 0o700)
            } catch {
                throw SandboxError(error.code, "create \(dir): \(error.message)")
            }
            guard mount(dir, dir, nil, UInt(MS_BIND), nil) == 0, mount(nil, dir, nil, UInt(propagation), nil) == 0 else {
                throw SandboxError(.internal, "prepare the mount \(dir): \(String(cString: strerror(errno)))")
            }
        }
    }

    static func stagingPath(for shared: String) -> String { shared + ".staging" }

    /// Binds `source` at `target` inside the shared tree, read-only if asked.
    ///
    /// A read-only remount does not propagate, so a bind made in the shared tree and remounted
    /// read-only afterwards would stay writable in virtiofsd's namespace. Instead the bind is made
    /// and restricted in the private staging mount, then moved in: every copy is cloned read-only.
    static func bind(_ source: String, at target: String, sharedRoot: String, readOnly: Bool) throws(SandboxError) {
        var st = stat()
        guard stat(source, &st) == 0 else {
            throw SandboxError(.notFound, "\(source): \(String(cString: strerror(errno)))")
        }
        let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
        let staging = stagingPath(for: sharedRoot) + "/\(UInt64.random(in: 0...UInt64.max))"
        let parent = String(target[..<(target.lastIndex(of: "/") ?? target.endIndex)])
        do throws(SystemError) {
            try Files.makeDirectories(parent, mode: 0o755)
            for node in [staging, target] {
                if isDirectory { try Files.makeDirectories(node, mode: 0o755) } else { try Files.writeString(node, "", mode: 0o600) }
            }
        } catch {
            throw SandboxError(error.code, "create \(target): \(error.message)")
        }
        defer { if isDirectory { rmdir(staging) } else { unlink(staging) } }
        guard mount(source, staging, nil, UInt(MS_BIND) | UInt(MS_REC), nil) == 0 else {
            throw SandboxError(.internal, "bind \(source): \(String(cString: strerror(errno)))")
        }
        // Host mount events under the source stay on the host.
        _ = mount(nil, staging, nil, UInt(MS_PRIVATE) | UInt(MS_REC), nil)
        if readOnly {
            guard mount(nil, staging, nil, UInt(MS_BIND) | UInt(MS_REMOUNT) | UInt(MS_RDONLY), nil) == 0 else {
                let reason = String(cString: strerror(errno))
                umount2(staging, Int32(MNT_DETACH))
                throw SandboxError(.internal, "make the bind of \(source) read-only: \(reason)")
            }
        }
        guard mount(staging, target, nil, UInt(MS_MOVE), nil) == 0 else {
            let reason = String(cString: strerror(errno))
            umount2(staging, Int32(MNT_DETACH))
            throw SandboxError(.internal, "move the bind of \(source) to \(target): \(reason)")
        }
    }

    /// Lazily unmounts everything at or below `path`, deepest first.
    public static func unmountAll(under path: String) {
        for point in Files.mountPoints(under: path).sorted(by: { $0.count > $1.count }) {
            umount2(point, Int32(MNT_DETACH))
        }
    }
}

import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// The host side of the shared directory: `<run dir>/shared/<container>/rootfs` and
/// `.../mounts/<n>` are bind mounts of the bundle's rootfs and of the spec's bind sources; the guest
/// sees the same tree at `/run/cocoon/shared`.
public enum SharedFiles {
    /// fcntl.h's O_PATH, which the Glibc module hides behind _GNU_SOURCE.
    static let O_PATH: Int32 = 0o10000000

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
        guard target.hasPrefix(sharedRoot + "/") else {
            throw SandboxError(.internal, "\(target) is not under the shared directory \(sharedRoot)")
        }
        // The guest can write the shared tree: the target is made and held by descriptors, never
        // resolved by path, so a symlink planted by the guest cannot send the bind elsewhere on the host.
        let holder = try openInside(sharedRoot, String(target.dropFirst(sharedRoot.count + 1)), directory: isDirectory)
        defer { close(holder) }
        let staging = stagingPath(for: sharedRoot) + "/\(UInt64.random(in: 0...UInt64.max))"
        do throws(SystemError) {
            if isDirectory { try Files.makeDirectories(staging, mode: 0o755) } else { try Files.writeString(staging, "", mode: 0o600) }
        } catch {
            throw SandboxError(error.code, "create \(staging): \(error.message)")
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
        guard mount(staging, "/proc/self/fd/\(holder)", nil, UInt(MS_MOVE), nil) == 0 else {
            let reason = String(cString: strerror(errno))
            umount2(staging, Int32(MNT_DETACH))
            throw SandboxError(.internal, "move the bind of \(source) to \(target): \(reason)")
        }
    }

    /// Creates `relative` under `root` one component at a time with mkdirat/openat and O_NOFOLLOW,
    /// returning an O_PATH descriptor of the last one. Any symlink on the way is an error.
    static func openInside(_ root: String, _ relative: String, directory: Bool) throws(SandboxError) -> Int32 {
        var dir = open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dir >= 0 else { throw SandboxError(.internal, "open \(root): \(String(cString: strerror(errno)))") }
        let parts = relative.split(separator: "/").map(String.init)
        guard !parts.isEmpty, !parts.contains(".."), !parts.contains(".") else {
            close(dir)
            throw SandboxError(.internal, "bad shared path \(relative)")
        }
        for (i, part) in parts.enumerated() {
            let last = i == parts.count - 1
            let next: Int32
            if last && !directory {
                let fd = openat(dir, part, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
                if fd >= 0 { close(fd) }
                next = openat(dir, part, O_PATH | O_NOFOLLOW | O_CLOEXEC)
                var st = stat()
                if next >= 0 && (fstat(next, &st) != 0 || (st.st_mode & S_IFMT) != S_IFREG) {
                    close(next)
                    close(dir)
                    throw SandboxError(.permissionDenied, "\(root)/\(relative) is not a regular file: refusing to bind over it")
                }
            } else {
                if mkdirat(dir, part, 0o755) != 0 && errno != EEXIST {
                    let reason = String(cString: strerror(errno))
                    close(dir)
                    throw SandboxError(.internal, "create \(root)/\(relative): \(reason)")
                }
                next = openat(dir, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            let reason = String(cString: strerror(errno))
            close(dir)
            guard next >= 0 else {
                throw SandboxError(.permissionDenied, "\(root)/\(relative): \(reason) (a symlink where a directory should be?)")
            }
            dir = next
        }
        return dir
    }

    /// Lazily unmounts everything at or below `path`, deepest first.
    public static func unmountAll(under path: String) {
        for point in Files.mountPoints(under: path).sorted(by: { $0.count > $1.count }) {
            // UMOUNT_NOFOLLOW: a symlink the guest put in place of a mount point is not followed.
            umount2(point, Int32(MNT_DETACH) | 8)
        }
    }
}

import CSupport
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// One sealed in-memory copy of the init stage, made on first use and executed for every container
/// and exec after that. Sealed means immutable, so sharing it is as safe as a fresh copy per process;
/// a long-lived runtime (the guest agent) saves copying its binary each time.
public final class SealedCopy: @unchecked Sendable {
    private let path: String
    /// The file itself cannot change (a guest's read-only image on a read-only disk): it is opened,
    /// not copied, which saves the copy's time and memory.
    public let fileIsImmutable: Bool
    private let lock = NSLockLite()
    private var fd: Int32 = -1

    public init(of path: String, fileIsImmutable: Bool = false) {
        self.path = path
        self.fileIsImmutable = fileIsImmutable
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The descriptor, owned by this object; -1 with errno set on failure.
    func descriptor() -> Int32 {
        lock.lock()
        defer { lock.unlock() }
        if fd < 0 { fd = fileIsImmutable ? open(path, O_RDONLY | O_CLOEXEC) : cocoon_sealed_copy(path) }
        return fd
    }
}

extension ContainerRuntime {
    /// A sealed copy of the init stage and whether the caller must close it.
    func sealedInit() throws(LinuxContainerError) -> (Int32, Bool) {
        if let shared = sharedSealedCopy {
            let fd = shared.descriptor()
            guard fd >= 0 else {
                throw LinuxContainerError(.notFound, step: "\(shared.fileIsImmutable ? "open" : "copy") \(initExecutable)", String(cString: strerror(errno)))
            }
            return (fd, false)
        }
        let fd = cocoon_sealed_copy(initExecutable)
        guard fd >= 0 else { throw LinuxContainerError(.notFound, step: "copy \(initExecutable)", String(cString: strerror(errno))) }
        return (fd, true)
    }
}

import StatusCodes

/// Errors of the rtnetlink client: the request that failed and the kernel's answer (errno and, when
/// the kernel gives one, its extended-ack message).
public struct NetlinkError: CocoonError {
    public let code: StatusCode
    public let message: String

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The status code for a kernel errno.
    static func code(forErrno e: Int32) -> StatusCode {
        switch e {
        case 2, 19: .notFound          // ENOENT, ENODEV
        case 17: .alreadyExists        // EEXIST
        case 1, 13: .permissionDenied  // EPERM, EACCES
        case 22, 34, 95: .invalidArgument  // EINVAL, ERANGE, EOPNOTSUPP
        case 16: .failedPrecondition   // EBUSY
        case 110: .deadlineExceeded    // ETIMEDOUT
        default: .internal
        }
    }
}

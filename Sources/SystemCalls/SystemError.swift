import StatusCodes
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call: what was attempted, and errno.
public struct SystemError: CocoonError, Equatable {
    public let operation: String
    public let errno: Int32
    public let detail: String?

    public init(_ operation: String, errno: Int32 = Glibc.errno, detail: String? = nil) {
        self.operation = operation
        self.errno = errno
        self.detail = detail
    }

    public var message: String {
        let reason = String(cString: strerror(errno))
        if let detail { return "\(operation): \(reason) (\(detail))" }
        return "\(operation): \(reason)"
    }

    public var code: StatusCode {
        switch errno {
        case ENOENT: .notFound
        case EEXIST: .alreadyExists
        case EACCES, EPERM: .permissionDenied
        case EINVAL: .invalidArgument
        case ETIMEDOUT: .deadlineExceeded
        case ENOMEM, ENOSPC, EMFILE, ENFILE: .resourceExhausted
        case ECONNREFUSED, ECONNRESET, EPIPE, ENOTCONN: .unavailable
        default: .internal
        }
    }

    /// Retries a call interrupted by a signal; throws on any other failure.
    @discardableResult
    public static func check<T: BinaryInteger>(_ operation: @autoclosure () -> String, _ call: () -> T) throws(SystemError) -> T {
        while true {
            let r = call()
            if r >= 0 { return r }
            if Glibc.errno == EINTR { continue }
            throw SystemError(operation())
        }
    }
}

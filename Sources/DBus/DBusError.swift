import StatusCodes

/// A D-Bus failure: a malformed or oversized message, a refused authentication, a dead or silent peer,
/// or an error reply (whose D-Bus error name is kept so callers can tell, say, NoSuchUnit apart).
public struct DBusError: CocoonError, Equatable {
    public let code: StatusCode
    public let message: String
    /// The error name of an error reply (`org.freedesktop.systemd1.NoSuchUnit`), nil for local failures.
    public let name: String?

    public init(_ code: StatusCode = .internal, _ message: String, name: String? = nil) {
        self.code = code
        self.message = message
        self.name = name
    }

    static func malformed(_ what: String) -> DBusError {
        DBusError(.dataLoss, "malformed D-Bus message: \(what)")
    }
}

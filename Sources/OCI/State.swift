#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The runtime-spec state, with runc's extra fields (`rootfs`, `created`, `owner`) that its clients read.
public struct State: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        case creating, created, running, stopped, paused
    }
    public var ociVersion: String
    public var id: String
    public var status: Status
    public var pid: Int32
    public var bundle: String
    public var rootfs: String
    /// RFC 3339 with nanoseconds, as runc prints it.
    public var created: String
    public var owner: String
    public var annotations: [String: String]?

    public init(id: String, status: Status, pid: Int32, bundle: String, rootfs: String, created: String,
                owner: String = "", annotations: [String: String]? = nil) {
        self.ociVersion = OCIVersion.current
        self.id = id
        self.status = status
        self.pid = pid
        self.bundle = bundle
        self.rootfs = rootfs
        self.created = created
        self.owner = owner
        self.annotations = annotations
    }
}

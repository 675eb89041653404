/// The command line containerd gives a runtime v2 shim, in Go's flag syntax:
/// `-namespace NS -address ADDR -publish-binary PATH -id ID [-bundle DIR] [-debug] start|delete`,
/// or `-v`. `-flag value`, `-flag=value` and `--flag` all parse, as with Go's flag package.
public struct ShimFlags: Equatable, Sendable {
    public enum Action: String, Sendable {
        case start, delete, version
        /// The long-running daemon `start` leaves behind (internal to this binary).
        case serve
    }

    public var namespace = ""
    public var address = ""
    public var publishBinary = ""
    public var id = ""
    public var bundle = ""
    public var socket = ""
    public var debug = false
    public var action: Action = .version

    static let valueFlags: Set<String> = ["namespace", "address", "publish-binary", "id", "bundle", "socket"]
    static let boolFlags: Set<String> = ["debug", "v", "systemd-cgroup"]

    public init() {}

    public static func parse(_ arguments: [String]) throws(ShimError) -> ShimFlags {
        var flags = ShimFlags()
        var actions: [String] = []
        var version = false
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            i += 1
            guard argument.hasPrefix("-"), argument != "-" else {
                actions.append(argument)
                continue
            }
            var name = String(argument.drop(while: { $0 == "-" }))
            var value: String?
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            if boolFlags.contains(name) {
                let on = value.map { $0 == "true" || $0 == "1" } ?? true
                if name == "debug" { flags.debug = on }
                if name == "v" { version = on }
                continue
            }
            guard valueFlags.contains(name) else {
                throw ShimError(.invalidArgument, "unknown flag -\(name); valid flags: "
                    + (valueFlags.union(boolFlags)).sorted().map { "-" + $0 }.joined(separator: " "))
            }
            if value == nil {
                guard i < arguments.count else { throw ShimError(.invalidArgument, "flag -\(name) needs a value") }
                value = arguments[i]
                i += 1
            }
            switch name {
            case "namespace": flags.namespace = value!
            case "address": flags.address = value!
            case "publish-binary": flags.publishBinary = value!
            case "id": flags.id = value!
            case "bundle": flags.bundle = value!
            default: flags.socket = value!
            }
        }
        if version {
            flags.action = .version
            return flags
        }
        guard actions.count == 1, let action = Action(rawValue: actions[0]), action != .version else {
            throw ShimError(.invalidArgument,
                "expected one action, start or delete (or -v for the version); got \(actions.isEmpty ? "none" : actions.joined(separator: " "))")
        }
        flags.action = action
        guard !flags.namespace.isEmpty else { throw ShimError(.invalidArgument, "flag -namespace is required") }
        guard !flags.id.isEmpty else { throw ShimError(.invalidArgument, "flag -id is required") }
        return flags
    }
}

import Foundation
import Hypervisor
import StatusCodes
import TOMLKit

/// How containers are isolated.
public enum Isolation: String, Sendable, CaseIterable {
    /// Each pod in its own VM (the default).
    case vm
    /// Directly on the host, like runc.
    case process
}

/// How a pod's interfaces are wired to the VM's NICs (docs/networking.md).
public enum NetworkModel: String, Sendable, CaseIterable {
    /// A tap and tc ingress redirects both ways.
    case tcfilter
    /// A macvtap in passthru mode on the pod interface.
    case macvtap
}

public enum LogLevel: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

/// `[hypervisor]`
public struct HypervisorConfig: Sendable, Equatable {
    public var path: String
    public var kernel: String
    public var initrd: String
    /// The agent's root as an ext4 image (see GuestRootKind).
    public var image: String
    public var bootFrom: GuestRootKind
    public var machine: MachineType
    public var accel: AccelerationMode
    public var memoryMiB: Int
    public var vcpus: Int
    public var bootTimeoutSeconds: Double
    public var kernelParams: [String]
    public var virtiofsd: String
    /// How container root filesystems reach the guest.
    public var sharedFS: SharedFilesystemKind
    /// Guest memory beyond a container's memory limit (kernel, agent, page cache) when the VM is
    /// sized from the limit.
    public var memoryOverheadMiB: Int
    /// The most vCPUs a CPU quota may ask for.
    public var maxVcpus: Int
    /// What the host may spend on a VM beyond its RAM (QEMU itself and its translation cache under
    /// TCG, virtiofsd, cocoon's daemon and stand-ins): the runc command line limits the host cgroup it
    /// puts them in to VM memory plus this. 0: no host limit.
    public var hostMemoryOverheadMiB: Int = 256
    /// VM settings a pod may change through `io.cocoon.vm.*` annotations; none by default, since
    /// annotations come from whoever creates the pod.
    public var enableAnnotations: Set<VMAnnotation> = []
}

/// `[agent]`
public struct AgentConfig: Sendable, Equatable {
    public var logLevel: LogLevel
}

/// `[runtime]`
public struct RuntimeConfig: Sendable, Equatable {
    public var isolation: Isolation
    /// How a pod's network reaches the VM.
    public var networkModel: NetworkModel = .tcfilter
    /// State directory, like runc's --root.
    public var root: String
    public var debug: Bool
    /// The static container init stage; nil means next to the cocoon binary or in ../libexec/cocoon.
    public var initBinary: String?
    /// Where VMs' run directories go when `--root` moved `root` (their unix socket paths must stay
    /// short): the configured runtime.root. Not a configuration key.
    public var sandboxRoot: String?

    /// `<sandboxBase>/sandboxes/<name>` holds each VM's sockets and shared directory.
    public var sandboxBase: String { sandboxRoot ?? root }
}

/// The whole of configuration.toml, with defaults filled in.
public struct Configuration: Sendable, Equatable {
    public var hypervisor: HypervisorConfig
    public var agent: AgentConfig
    public var runtime: RuntimeConfig
    /// The file these values came from, or nil for built-in defaults.
    public var source: String?

    public static let defaultPath = "/etc/cocoon/configuration.toml"
    public static let environmentVariable = "COCOON_CONFIG"

    /// Defaults that need no file after `make install`: guest assets live in
    /// `<prefix>/share/cocoon`, where `<prefix>/bin` holds the running executable.
    public static func defaults(dataDirectory: String = Configuration.installedDataDirectory()) -> Configuration {
        Configuration(
            hypervisor: HypervisorConfig(
                path: "/usr/bin/qemu-system-x86_64",
                kernel: dataDirectory + "/vmlinux",
                initrd: dataDirectory + "/cocoon-agent.initrd",
                image: dataDirectory + "/cocoon-agent.img",
                bootFrom: .image,
                machine: .microvm,
                accel: .auto,
                memoryMiB: 256,
                vcpus: 1,
                bootTimeoutSeconds: 30,
                kernelParams: [],
                virtiofsd: "/usr/lib/qemu/virtiofsd",
                sharedFS: .virtioFS,
                memoryOverheadMiB: 128,
                maxVcpus: 16),
            agent: AgentConfig(logLevel: .info),
            runtime: RuntimeConfig(isolation: .vm, root: "/run/cocoon", debug: false, initBinary: nil),
            source: nil)
    }

    public static func installedDataDirectory() -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/usr/local/bin/cocoon"
        let prefix = URL(fileURLWithPath: exe).deletingLastPathComponent().deletingLastPathComponent().path
        return prefix + "/share/cocoon"
    }

    /// The file to read: `--config`, else `$COCOON_CONFIG`, else the default path if it exists.
    public static func resolvePath(explicit: String?, environment: [String: String]) -> String? {
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = environment[environmentVariable], !env.isEmpty { return env }
        return FileManager.default.fileExists(atPath: defaultPath) ? defaultPath : nil
    }

    /// Loads the configuration the way every cocoon command does.
    public static func load(explicitPath: String? = nil,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigError) -> Configuration {
        guard let path = resolvePath(explicit: explicitPath, environment: environment) else { return defaults() }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(file: path, key: nil, code: .notFound,
                              problem: "cannot read the configuration file: \(error.localizedDescription)")
        }
        return try parse(text, file: path)
    }

    /// Parses TOML text. Unknown tables and keys are errors, so that a typo never goes unnoticed.
    public static func parse(_ text: String, file: String, base: Configuration = Configuration.defaults()) throws(ConfigError) -> Configuration {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(file: file, key: nil, problem:
                "not valid TOML at line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
        } catch {
            throw ConfigError(file: file, key: nil, problem: "not valid TOML: \(error)")
        }
        var config = base
        config.source = file
        let reader = TableReader(file: file)
        try reader.checkKeys(table, prefix: "", allowed: ["hypervisor", "agent", "runtime"])

        if let h = try reader.subtable(table, "hypervisor") {
            try reader.checkKeys(h, prefix: "hypervisor.", allowed: [
                "path", "kernel", "initrd", "image", "boot_from", "machine", "accel", "memory_mib", "vcpus",
                "boot_timeout_seconds", "kernel_params", "virtiofsd", "shared_fs",
                "memory_overhead_mib", "host_memory_overhead_mib", "max_vcpus", "enable_annotations",
            ])
            if let v = try reader.stringArray(h, "hypervisor.enable_annotations") {
                var enabled: Set<VMAnnotation> = []
                for name in v {
                    guard let a = VMAnnotation(rawValue: name) else {
                        throw ConfigError(file: file, key: "hypervisor.enable_annotations", problem:
                            "unknown annotation '\(name)'; valid: \(VMAnnotation.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
                    }
                    enabled.insert(a)
                }
                config.hypervisor.enableAnnotations = enabled
            }
            if let v = try reader.integer(h, "hypervisor.memory_overhead_mib", in: 32...65536) { config.hypervisor.memoryOverheadMiB = v }
            if let v = try reader.integer(h, "hypervisor.host_memory_overhead_mib", in: 0...65536) { config.hypervisor.hostMemoryOverheadMiB = v }
            if let v = try reader.integer(h, "hypervisor.max_vcpus", in: 1...240) { config.hypervisor.maxVcpus = v }
            if let v: SharedFilesystemKind = try reader.choice(h, "hypervisor.shared_fs") { config.hypervisor.sharedFS = v }
            if let v = try reader.absolutePath(h, "hypervisor.path") { config.hypervisor.path = v }
            if let v = try reader.absolutePath(h, "hypervisor.kernel") { config.hypervisor.kernel = v }
            if let v = try reader.absolutePath(h, "hypervisor.initrd") { config.hypervisor.initrd = v }
            if let v = try reader.absolutePath(h, "hypervisor.image") { config.hypervisor.image = v }
            if let v: GuestRootKind = try reader.choice(h, "hypervisor.boot_from") { config.hypervisor.bootFrom = v }
            if let v = try reader.absolutePath(h, "hypervisor.virtiofsd") { config.hypervisor.virtiofsd = v }
            if let v: MachineType = try reader.choice(h, "hypervisor.machine") { config.hypervisor.machine = v }
            if let v: AccelerationMode = try reader.choice(h, "hypervisor.accel") { config.hypervisor.accel = v }
            if let v = try reader.integer(h, "hypervisor.memory_mib", in: 64...1_048_576) { config.hypervisor.memoryMiB = v }
            if let v = try reader.integer(h, "hypervisor.vcpus", in: 1...240) { config.hypervisor.vcpus = v }
            if let v = try reader.number(h, "hypervisor.boot_timeout_seconds", in: 1...600) { config.hypervisor.bootTimeoutSeconds = v }
            if let v = try reader.string(h, "hypervisor.kernel_params") {
                config.hypervisor.kernelParams = try KernelParameters.validate(v, file: file, key: "hypervisor.kernel_params")
            }
        }
        if let a = try reader.subtable(table, "agent") {
            try reader.checkKeys(a, prefix: "agent.", allowed: ["log_level"])
            if let v: LogLevel = try reader.choice(a, "agent.log_level") { config.agent.logLevel = v }
        }
        if let r = try reader.subtable(table, "runtime") {
            try reader.checkKeys(r, prefix: "runtime.", allowed: ["isolation", "root", "debug", "init", "network_model"])
            if let v = try reader.absolutePath(r, "runtime.init") { config.runtime.initBinary = v }
            if let v: Isolation = try reader.choice(r, "runtime.isolation") { config.runtime.isolation = v }
            if let v = try reader.absolutePath(r, "runtime.root") { config.runtime.root = v }
            if let v = try reader.bool(r, "runtime.debug") { config.runtime.debug = v }
            if let v: NetworkModel = try reader.choice(r, "runtime.network_model") { config.runtime.networkModel = v }
        }
        return config
    }
}

/// Extra kernel parameters are split on spaces; each must be printable and free of quotes,
/// so that nothing can smuggle a second `-append` or a shell word into the QEMU command line.
public enum KernelParameters {
    public static func validate(_ text: String, file: String, key: String) throws(ConfigError) -> [String] {
        let words = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        for word in words {
            let bad = word.unicodeScalars.first { $0.value < 0x21 || $0.value > 0x7e || $0 == "\"" || $0 == "'" }
            if let bad {
                throw ConfigError(file: file, key: key, problem:
                    "parameter '\(word)' contains \(bad.escaped(asASCII: true)); use printable ASCII without quotes")
            }
        }
        return words
    }
}

/// Reads typed values, turning every mismatch into an error that names the file and the key.
private struct TableReader {
    let file: String

    func checkKeys(_ table: TOMLTable, prefix: String, allowed: Set<String>) throws(ConfigError) {
        for key in table.keys.sorted() where !allowed.contains(key) {
            throw ConfigError(file: file, key: prefix + key, problem:
                "unknown key; valid keys here are: \(allowed.sorted().map { prefix + $0 }.joined(separator: ", "))")
        }
    }

    private func leaf(_ fullKey: String) -> String { String(fullKey.split(separator: ".").last!) }

    func subtable(_ table: TOMLTable, _ key: String) throws(ConfigError) -> TOMLTable? {
        guard let value = table[key] else { return nil }
        guard let t = value.table else {
            throw ConfigError(file: file, key: key, problem: "must be a table ([\(key)]), found \(value.type)")
        }
        return t
    }

    func string(_ table: TOMLTable, _ key: String) throws(ConfigError) -> String? {
        guard let value = table[leaf(key)] else { return nil }
        guard let s = value.string else {
            throw ConfigError(file: file, key: key, problem: "must be a string, found \(value.type)")
        }
        return s
    }

    func stringArray(_ table: TOMLTable, _ key: String) throws(ConfigError) -> [String]? {
        guard let value = table[leaf(key)] else { return nil }
        guard let array = value.array else {
            throw ConfigError(file: file, key: key, problem: "must be an array of strings, found \(value.type)")
        }
        var out: [String] = []
        for element in array {
            guard let s = element.string else {
                throw ConfigError(file: file, key: key, problem: "must be an array of strings, found an element of type \(element.type)")
            }
            out.append(s)
        }
        return out
    }

    func absolutePath(_ table: TOMLTable, _ key: String) throws(ConfigError) -> String? {
        guard let s = try string(table, key) else { return nil }
        guard s.hasPrefix("/"), !s.contains("\0"), !s.contains(",") else {
            throw ConfigError(file: file, key: key, problem:
                "must be an absolute path without commas (QEMU option syntax), found '\(s)'")
        }
        return s
    }

    func choice<T: RawRepresentable & CaseIterable>(_ table: TOMLTable, _ key: String) throws(ConfigError) -> T? where T.RawValue == String {
        guard let s = try string(table, key) else { return nil }
        guard let v = T(rawValue: s) else {
            throw ConfigError(file: file, key: key, problem:
                "'\(s)' is not valid; valid values: \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return v
    }

    func integer(_ table: TOMLTable, _ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let value = table[leaf(key)] else { return nil }
        guard let i = value.int else {
            throw ConfigError(file: file, key: key, problem: "must be an integer, found \(value.type)")
        }
        guard range.contains(i) else {
            throw ConfigError(file: file, key: key, problem: "\(i) is out of range; valid: \(range.lowerBound) to \(range.upperBound)")
        }
        return i
    }

    func number(_ table: TOMLTable, _ key: String, in range: ClosedRange<Double>) throws(ConfigError) -> Double? {
        guard let value = table[leaf(key)] else { return nil }
        let d: Double
        if let i = value.int { d = Double(i) } else if let x = value.double { d = x } else {
            throw ConfigError(file: file, key: key, problem: "must be a number, found \(value.type)")
        }
        guard range.contains(d) else {
            throw ConfigError(file: file, key: key, problem: "\(d) is out of range; valid: \(range.lowerBound) to \(range.upperBound)")
        }
        return d
    }

    func bool(_ table: TOMLTable, _ key: String) throws(ConfigError) -> Bool? {
        guard let value = table[leaf(key)] else { return nil }
        guard let b = value.bool else {
            throw ConfigError(file: file, key: key, problem: "must be true or false, found \(value.type)")
        }
        return b
    }
}

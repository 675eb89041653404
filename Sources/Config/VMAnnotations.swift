/// The VM settings a pod may ask for through annotations, each only when
/// `hypervisor.enable_annotations` in configuration.toml lists it.
public enum VMAnnotation: String, Sendable, CaseIterable, Hashable {
    case memoryMiB = "memory_mib"
    case vcpus = "vcpus"
    case kernelParams = "kernel_params"

    public static let prefix = "io.cocoon.vm."
    public var key: String { Self.prefix + rawValue }
}

/// What a pod's annotations change in its VM, validated against the configuration.
public struct VMOverrides: Sendable, Equatable {
    public var memoryMiB: Int?
    public var vcpus: Int?
    public var kernelParams: [String] = []

    public init(memoryMiB: Int? = nil, vcpus: Int? = nil, kernelParams: [String] = []) {
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        self.kernelParams = kernelParams
    }

    /// Reads the `io.cocoon.vm.*` annotations. One that is unknown, not enabled, or out of range is
    /// an error naming it (the pod is refused rather than run with settings it did not get).
    public static func from(annotations: [String: String], config: HypervisorConfig, file: String) throws(ConfigError) -> VMOverrides {
        var out = VMOverrides()
        for (key, value) in annotations.sorted(by: { $0.key < $1.key }) where key.hasPrefix(VMAnnotation.prefix) {
            let where_ = "\(file): annotations[\"\(key)\"]"
            guard let annotation = VMAnnotation(rawValue: String(key.dropFirst(VMAnnotation.prefix.count))) else {
                throw ConfigError(file: where_, key: nil, problem:
                    "unknown VM annotation; valid: \(VMAnnotation.allCases.map(\.key).joined(separator: ", "))")
            }
            guard config.enableAnnotations.contains(annotation) else {
                throw ConfigError(file: where_, key: nil, code: .permissionDenied, problem:
                    "not allowed by configuration.toml; add \"\(annotation.rawValue)\" to hypervisor.enable_annotations to allow it")
            }
            switch annotation {
            case .memoryMiB:
                guard let v = Int(value), (64...1_048_576).contains(v) else {
                    throw ConfigError(file: where_, key: nil, problem: "'\(value)' must be a whole number of MiB from 64 to 1048576")
                }
                out.memoryMiB = v
            case .vcpus:
                guard let v = Int(value), (1...config.maxVcpus).contains(v) else {
                    throw ConfigError(file: where_, key: nil, problem: "'\(value)' must be a whole number from 1 to hypervisor.max_vcpus (\(config.maxVcpus))")
                }
                out.vcpus = v
            case .kernelParams:
                do throws(ConfigError) {
                    out.kernelParams = try KernelParameters.validate(value, file: where_, key: "kernel_params")
                } catch {
                    throw ConfigError(file: where_, key: nil, problem: error.problem)
                }
            }
        }
        return out
    }
}

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import OCI
import Processes
import SystemCalls

/// Runs OCI hooks: the path with its args (args[0] is argv[0]) and env, the container's state JSON
/// on stdin, killed at its timeout. A failing hook is an error naming the hook.
public enum HookRunner {
    /// Hooks without a timeout still get one, so a hung hook never hangs the runtime.
    public static let defaultTimeout = 120.0

    /// `networkNamespace`: a path whose network namespace the hooks run in (a VM pod's, which no host
    /// process of the container's lives in).
    public static func run(_ hooks: [Hook]?, kind: String, state: State, networkNamespace: String? = nil) throws(LinuxContainerError) {
        guard let hooks, !hooks.isEmpty else { return }
        var namespace: FileDescriptor?
        defer { namespace?.close() }
        if let networkNamespace {
            do throws(SystemError) { namespace = try FileDescriptor.open(networkNamespace, O_RDONLY | O_CLOEXEC) } catch {
                throw LinuxContainerError(error.code, step: "\(kind) hooks", "the network namespace \(networkNamespace): \(error.message)")
            }
        }
        let stateJSON: [UInt8]
        do { stateJSON = Array(try JSONEncoder().encode(state)) } catch {
            throw LinuxContainerError(step: "\(kind) hook", "cannot encode the state")
        }
        for (i, hook) in hooks.enumerated() {
            let step = "hooks.\(kind)[\(i)] \(hook.path)"
            var options = ChildProcess.Options()
            options.argv0 = hook.args?.first
            options.environment = Dictionary((hook.env ?? []).compactMap { entry -> (String, String)? in
                guard let eq = entry.firstIndex(of: "=") else { return nil }
                return (String(entry[..<eq]), String(entry[entry.index(after: eq)...]))
            }, uniquingKeysWith: { _, last in last })
            // A session (and process group) of its own, so a timeout kills what the hook started too.
            options.newSession = true
            options.killWithParent = true
            if let namespace { options.joinNamespaces = [namespace.rawValue] }
            let timeout = hook.timeout.map(Double.init) ?? defaultTimeout
            let result: (Termination, String)
            do {
                result = try ChildProcess.run(hook.path, Array((hook.args ?? []).dropFirst()), options: options,
                                              input: stateJSON, timeout: timeout)
            } catch {
                throw LinuxContainerError(error.code, step: step, error.message)
            }
            switch result.0 {
            case .exited(0): continue
            case .signalled(9) where hook.timeout != nil:
                throw LinuxContainerError(.deadlineExceeded, step: step, "did not finish within its timeout of \(hook.timeout!) s")
            case let t:
                let output = result.1.split(separator: "\n").suffix(3).joined(separator: " | ")
                throw LinuxContainerError(.failedPrecondition, step: step, "\(t)\(output.isEmpty ? "" : ": \(output)")")
            }
        }
    }
}

import Config
import Foundation
import SystemCalls

/// What the VM tests need, found from COCOON_CONFIG (set by `make test`), with the reason
/// to print when something is missing.
struct VMTestEnvironment: Sendable {
    let configuration: Configuration
    let baselineInitrd: String?
    let skipReason: String?

    var ready: Bool { skipReason == nil }

    static let shared = VMTestEnvironment.load()

    static func load() -> VMTestEnvironment {
        let env = ProcessInfo.processInfo.environment
        var config: Configuration
        do {
            config = try Configuration.load()
        } catch {
            return VMTestEnvironment(configuration: .defaults(), baselineInitrd: nil, skipReason: "configuration: \(error)")
        }
        // A state root of the tests' own, so leftovers are attributable to them.
        config.runtime.root = "/run/cocoon-test"
        config.hypervisor.bootTimeoutSeconds = 60
        let baseline = env["COCOON_BASELINE_INITRD"].flatMap { Files.exists($0) ? $0 : nil }
        var reason: String?
        if geteuid() != 0 { reason = "VM tests need root" }
        else if !Files.isExecutable(config.hypervisor.path) { reason = "QEMU \(config.hypervisor.path) is not installed (make deps)" }
        else if !Files.exists(config.hypervisor.kernel) { reason = "guest kernel \(config.hypervisor.kernel) is not built (make test builds it)" }
        else if !Files.exists(config.hypervisor.initrd) { reason = "guest initramfs \(config.hypervisor.initrd) is not built (make test builds it)" }
        return VMTestEnvironment(configuration: config, baselineInitrd: baseline, skipReason: reason)
    }

    /// PIDs of QEMU processes whose command line mentions `text` (a run directory).
    static func qemuProcesses(mentioning text: String) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap(Int32.init).filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let cmdline = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            return cmdline.contains("qemu-system") && cmdline.contains(text)
        }
    }
}

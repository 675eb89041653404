import ArgumentParser
import Foundation
import Processes
import SystemCalls

/// create + start + wait + delete of a busybox `true` container, through each runtime's `run`,
/// which does exactly those four steps.
struct BareBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bare", abstract: "cocoon with process isolation against runc and crun, same bundle, same run.")

    @Option(help: "The cocoon binary.") var cocoon: String
    @Option(help: "A busybox rootfs (tests/fixtures/make-busybox-rootfs.sh makes one).") var rootfs: String
    @Option(help: "Runs of each runtime (at least 20 for a median worth reading).") var runs: Int = 20

    func validate() throws {
        guard (1...1000).contains(runs) else { throw ValidationError("--runs must be between 1 and 1000") }
        guard FileManager.default.isExecutableFile(atPath: rootfs + "/bin/busybox") else {
            throw ValidationError("--rootfs \(rootfs) has no bin/busybox: make it with tests/fixtures/make-busybox-rootfs.sh")
        }
    }

    struct Runtime {
        let name: String
        let binary: String
        let arguments: (String, String, String) -> [String]  // root, bundle, id
    }

    func run() throws {
        let work = "/run/cocoon-bench/bare-\(getpid())"
        let bundle = work + "/bundle"
        try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        // A real directory: runc refuses a rootfs that is a symlink.
        let (copied, copyOutput) = try ChildProcess.run("/bin/cp", ["-a", rootfs, bundle + "/rootfs"], timeout: 60)
        guard copied == .exited(0) else { throw ValidationError("copy \(rootfs): \(copyOutput)") }
        let (t, out) = try ChildProcess.run(cocoon, ["spec", "--bundle", bundle])
        guard t == .exited(0) else { throw ValidationError("cocoon spec failed: \(out)") }
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: bundle + "/config.json"))) as! [String: Any]
        var process = config["process"] as! [String: Any]
        process["args"] = ["true"]
        config["process"] = process
        // crun 1.8 rejects 1.2.0; every runtime here implements 1.0.
        config["ociVersion"] = "1.0.2"
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: bundle + "/config.json"))

        // crun refuses a hybrid host whose cgroup2 has any controller (here: hugetlb, which none of the three
        // manages on such a host). All three then run in one mount namespace where that list reads empty, so
        // crun measures the same v1 work as the others; the namespace is joined by setns, alike for each.
        var options = ChildProcess.Options()
        options.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"]
        let view = try HybridCgroupView(work: work)
        defer { view?.remove() }
        if let view { options.joinNamespaces = [view.descriptor.rawValue] }

        var runtimes = [Runtime(name: "cocoon", binary: cocoon) { ["--isolation", "process", "--root", $0, "run", "-b", $1, $2] }]
        for (name, path) in [("runc", "/usr/sbin/runc"), ("crun", "/usr/bin/crun")] {
            runtimes.append(Runtime(name: name, binary: path) { ["--root", $0, "run", "-b", $1, $2] })
        }
        var times: [String: [Double]] = [:]
        var unusable: [String: String] = [:]
        for i in 0..<runs {
            for r in runtimes where unusable[r.name] == nil {
                guard FileManager.default.isExecutableFile(atPath: r.binary) else {
                    unusable[r.name] = "\(r.binary) is not installed"
                    continue
                }
                // A cgroup move by pid waits for an RCU grace period unless another one just did (the kernel's
                // rcu_sync for its threadgroup lock): without a pause, each run would inherit the state the
                // previous runtime left. 50 ms is several grace periods here.
                usleep(50_000)
                let watch = Stopwatch()
                let (termination, output) = try ChildProcess.run(r.binary, r.arguments(work + "/root-" + r.name, bundle, "bench-\(i)"),
                                                                  options: options, input: [], timeout: 30)
                let seconds = watch.elapsedSeconds
                if termination != .exited(0) {
                    let first = output.split(separator: "\n").first.map(String.init) ?? "\(termination)"
                    unusable[r.name] = "not runnable on this host: \(first)"
                    continue
                }
                times[r.name, default: []].append(seconds)
            }
        }
        guard let base = times["cocoon"].map(median) else {
            throw ValidationError("cocoon itself failed: \(unusable["cocoon"] ?? "unknown")")
        }
        print("bare benchmark: busybox `true`, create+start+wait+delete (`run`), \(runs) runs each, interleaved")
        if view != nil {
            print("  (hybrid cgroups: all three run in a mount namespace where \(HybridCgroupView.controllers) reads empty, for crun)")
        }
        for r in runtimes {
            if let t = times[r.name] {
                let m = median(t)
                let ratio = r.name == "cocoon" ? "" : String(format: "   cocoon/%@ = %.2f", r.name, base / m)
                print(String(format: "  %-7@ median %6.1f ms%@", r.name, m * 1000, ratio))
            } else {
                print("  \(r.name): \(unusable[r.name] ?? "no result")")
            }
        }
    }
}

/// A mount namespace in which the hybrid host's cgroup2 controller list is an empty file, kept open for the
/// runs and unmounted after. Nil when the host does not need one (cgroup v2 or v1 only, or no v2 controllers).
struct HybridCgroupView {
    static let controllers = "/sys/fs/cgroup/unified/cgroup.controllers"
    let descriptor: FileDescriptor
    let path: String

    init?(work: String) throws {
        guard let listed = try? Files.readString(Self.controllers),
              !listed.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return nil }
        path = work + "/mntns"
        let empty = work + "/empty"
        FileManager.default.createFile(atPath: path, contents: nil)
        FileManager.default.createFile(atPath: empty, contents: nil)
        // unshare keeps the namespace alive by bind-mounting it on `path`.
        let (made, output) = try ChildProcess.run("/usr/bin/unshare", ["--mount=" + path, "--propagation", "private",
                                                                       "/bin/mount", "--bind", empty, Self.controllers])
        guard made == .exited(0) else {
            _ = umount2(path, Int32(MNT_DETACH))
            throw ValidationError("unshare a mount namespace for crun: \(output)")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            _ = umount2(path, Int32(MNT_DETACH))
            throw ValidationError("open \(path): \(String(cString: strerror(errno)))")
        }
        descriptor = FileDescriptor(adopting: fd)
    }

    func remove() {
        descriptor.close()
        _ = umount2(path, Int32(MNT_DETACH))
    }
}

import ArgumentParser
import Cgroups
import Foundation
import LinuxContainer
import OCI

struct Pause: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Freeze every process of a container.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The container id.") var id: String
    func run() throws { try runtimeCommand(global) { config, _ in try containerRuntime(config).pause(id) } }
}

struct Resume: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Thaw a paused container.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The container id.") var id: String
    func run() throws { try runtimeCommand(global) { config, _ in try containerRuntime(config).resume(id) } }
}

struct Ps: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the processes of a container.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "table or json.") var format: String = "table"
    @Argument(help: "The container id.") var id: String
    @Argument(parsing: .captureForPassthrough, help: "ps options (table format only).") var psArguments: [String] = []

    func run() throws {
        try runtimeCommand(global) { config, _ in
            guard ["table", "json"].contains(format) else { throw CLIError("--format must be table or json, not '\(format)'") }
            let pids = try containerRuntime(config).processes(id)
            if format == "json" {
                print("[" + pids.map(String.init).joined(separator: ",") + "]")
                return
            }
            print("PID\tCMD")
            for pid in pids {
                let cmd = ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "")
                    .split(separator: "\0").joined(separator: " ")
                print("\(pid)\t\(cmd)")
            }
        }
    }
}

struct Update: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Change a running container's resource limits.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "A linux.resources JSON file, or - for standard input.") var resources: String?
    @Option(help: "Memory limit in bytes.") var memory: Int64?
    @Option(help: "Maximum number of processes.") var pidsLimit: Int64?
    @Option(help: "CPU CFS quota in microseconds.") var cpuQuota: Int64?
    @Option(help: "CPU CFS period in microseconds.") var cpuPeriod: UInt64?
    @Option(help: "CPU shares (relative weight).") var cpuShare: UInt64?
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, _ in
            var r = Resources()
            if let resources {
                let data = resources == "-" ? FileHandle.standardInput.readDataToEndOfFile()
                    : try Data(contentsOf: URL(fileURLWithPath: resources))
                do { r = try JSONDecoder().decode(Resources.self, from: data) } catch {
                    throw CLIError("--resources \(resources): not a valid linux.resources object: \(error)")
                }
            }
            if let memory { r.memory = MemoryResources(limit: memory, reservation: r.memory?.reservation, swap: r.memory?.swap) }
            if let pidsLimit { r.pids = PidsResources(limit: pidsLimit) }
            if cpuQuota != nil || cpuPeriod != nil || cpuShare != nil {
                var cpu = r.cpu ?? CPUResources()
                if let cpuQuota { cpu.quota = cpuQuota }
                if let cpuPeriod { cpu.period = cpuPeriod }
                if let cpuShare { cpu.shares = cpuShare }
                r.cpu = cpu
            }
            // The same validation as config.json, reported against the option.
            let probe = OCI.Spec(linux: Linux(resources: r))
            if let problem = probe.problems(file: "--resources").first { throw CLIError(problem.message) }
            try containerRuntime(config).update(id, resources: r)
        }
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print container statistics (--stats: once).")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the statistics once and exit.") var stats = false
    @Option(help: "Seconds between statistics when streaming.") var interval: Double = 5
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, _ in
            guard interval >= 0.1 && interval <= 3600 else { throw CLIError("--interval must be between 0.1 and 3600 seconds") }
            let runtime = try containerRuntime(config)
            repeat {
                let s = try runtime.stats(id)
                print(Self.render(id: id, s))
                if stats { return }
                Thread.sleep(forTimeInterval: interval)
            } while true
        }
    }

    /// runc's event shape: {"type":"stats","id":...,"data":{cpu, memory, pids}}.
    static func render(id: String, _ s: CgroupStats) -> String {
        let data: [String: Any] = [
            "cpu": ["usage": ["total": s.cpuUsageNanoseconds ?? 0]],
            "memory": ["usage": ["usage": s.memoryUsageBytes ?? 0, "limit": s.memoryLimitBytes ?? 0]],
            "pids": ["current": s.pidsCurrent ?? 0, "limit": s.pidsLimit ?? 0],
        ]
        let event: [String: Any] = ["type": "stats", "id": id, "data": data]
        let json = (try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])) ?? Data()
        return String(decoding: json, as: UTF8.self)
    }
}

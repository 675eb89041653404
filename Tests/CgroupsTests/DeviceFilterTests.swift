import Cgroups
import Foundation
import OCI
import Testing

@Suite struct DeviceFilterProgramTests {
    @Test func everyRuleBecomesABlockAndTheDefaultDenies() {
        let filter = DeviceFilter(rules: [DeviceCgroupRule(allow: false, access: "rwm"),
                                          DeviceCgroupRule(allow: true, type: "c", major: 1, minor: 3, access: "rwm")])
        let code = filter.instructions
        #expect(code.count == 6 + 8 + 5 + 2, "prologue, the char rule (type, access 3, major, minor, return 2), deny-all (access 3, return 2), default")
        #expect(code.last?.code == 0x95 && code[code.count - 2].immediate == 0, "ends with: deny")
        // Every jump lands inside the program.
        for (i, insn) in code.enumerated() where insn.code == 0x55 || insn.code == 0x15 {
            #expect(i + 1 + Int(insn.offset) < code.count)
        }
    }
}

/// The program loaded into this kernel and attached to a real cgroup v2 directory. This project's hosts
/// have cgroup2 at /sys/fs/cgroup/unified (hybrid) and the guest at /sys/fs/cgroup.
@Suite(.enabled(if: geteuid() == 0 && CgroupV2Root.path != nil && FileManager.default.fileExists(atPath: "/dev/kmsg"),
                "needs root, a cgroup2 hierarchy and /dev/kmsg"))
struct DeviceFilterKernelTests {
    @Test func theKernelEnforcesTheRules() throws {
        let root = try #require(CgroupV2Root.path)
        let manager = try CgroupManager(cgroupsPath: "/cocoon-devfilter-\(getpid())", containerID: "x", mountRoot: root, mode: .unified)
        try manager.create()
        defer { try? manager.destroy() }
        try manager.apply(Resources(devices: [DeviceCgroupRule(allow: false, access: "rwm")]))

        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "read go; echo x > /dev/null && echo null-ok; head -c1 /dev/kmsg > /dev/null 2>&1 && echo kmsg-ok || echo kmsg-denied"]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        try p.run()
        try manager.join(pid: p.processIdentifier)
        input.fileHandleForWriting.write(Data("go\n".utf8))
        let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(out.contains("null-ok"), "the default rules allow /dev/null: \(out)")
        #expect(out.contains("kmsg-denied"), "nothing allows /dev/kmsg: \(out)")
    }
}

enum CgroupV2Root {
    static var path: String? {
        for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        where FileManager.default.fileExists(atPath: candidate + "/cgroup.controllers") {
            return candidate
        }
        return nil
    }
}

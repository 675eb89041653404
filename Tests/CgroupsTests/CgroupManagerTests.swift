import Cgroups
import Foundation
import OCI
import Testing

@Suite struct CgroupPathTests {
    @Test func pathsAndModes() throws {
        let root = NSTemporaryDirectory() + "cg-\(UUID().uuidString)"
        let m = try CgroupManager(cgroupsPath: "/a/b", containerID: "x", mountRoot: root, mode: .unified)
        #expect(m.path == "/a/b")
        #expect(m.directories == [root + "/a/b"])
        #expect(try CgroupManager(cgroupsPath: nil, containerID: "c1", mountRoot: root, mode: .unified).path == "/cocoon/c1")
        #expect(try CgroupManager(cgroupsPath: "//a//b/", containerID: "x", mountRoot: root, mode: .unified).path == "/a/b")
    }

    @Test func unsafeOrSystemdPathsAreRefused() {
        #expect(throws: CgroupError.self) { try CgroupManager(cgroupsPath: "/a/../../etc", containerID: "x", mode: .unified) }
        #expect(throws: CgroupError.self) { try CgroupManager(cgroupsPath: "system.slice:cocoon:x", containerID: "x", mode: .unified) }
    }
}

/// The cgroup v2 writes, against a directory laid out like a v2 hierarchy (this host's
/// controllers are v1; the guest's are v2).
@Suite struct CgroupV2WriteTests {
    let root: String

    init() throws {
        root = NSTemporaryDirectory() + "cgv2-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try "cpuset cpu io memory pids\n".write(toFile: root + "/cgroup.controllers", atomically: true, encoding: .utf8)
        FileManager.default.createFile(atPath: root + "/cgroup.subtree_control", contents: nil)
    }

    func read(_ file: String) -> String? {
        try? String(contentsOfFile: root + "/pod/c1/" + file, encoding: .utf8)
    }

    @Test func limitsAreTranslated() throws {
        let m = try CgroupManager(cgroupsPath: "/pod/c1", containerID: "c1", mountRoot: root)
        #expect(m.mode == .unified)
        try m.create()
        // The kernel provides the control files of a new cgroup; cocoon never creates them.
        for file in ["memory.max", "memory.low", "memory.swap.max", "memory.high", "cpu.weight", "cpu.max", "cpuset.cpus", "pids.max"] {
            FileManager.default.createFile(atPath: root + "/pod/c1/" + file, contents: nil)
        }
        #expect(throws: CgroupError.self, "a missing control file is an error, not a file to create") {
            try m.apply(Resources(hugepageLimits: [HugepageLimit(pageSize: "2MB", limit: 1)]))
        }
        #expect(try String(contentsOfFile: root + "/cgroup.subtree_control", encoding: .utf8) == "+pids",
                "controllers are enabled one by one in the ancestors (a plain file keeps the last write)")
        var r = Resources(memory: MemoryResources(limit: 64 << 20, reservation: 32 << 20, swap: 96 << 20),
                          cpu: CPUResources(shares: 1024, quota: 50_000, period: 100_000, cpus: "0-1"),
                          pids: PidsResources(limit: -1))
        r.unified = ["memory.high": "60000000"]
        try m.apply(r)
        #expect(read("memory.max") == "67108864")
        #expect(read("memory.low") == "33554432")
        #expect(read("memory.swap.max") == "33554432", "v2 swap excludes memory")
        #expect(read("cpu.weight") == "39")
        #expect(read("cpu.max") == "50000 100000")
        #expect(read("cpuset.cpus") == "0-1")
        #expect(read("pids.max") == "max")
        #expect(read("memory.high") == "60000000")
        try m.apply(Resources(memory: MemoryResources(limit: -1), cpu: CPUResources(quota: -1)))
        #expect(read("memory.max") == "max")
        #expect(read("cpu.max") == "max 100000")
        // Zeros mean "unchanged" (docker update sends them for what it does not set).
        try m.apply(Resources(memory: MemoryResources(limit: 0), cpu: CPUResources(shares: 0, quota: 0, period: 0), pids: PidsResources(limit: 0)))
        #expect(read("memory.max") == "max")
        #expect(read("cpu.weight") == "39")
        #expect(read("pids.max") == "max")
    }
}

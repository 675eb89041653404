import Foundation
import LinuxContainer
import Testing

@Suite struct SecurePathTests {
    let root: String

    init() throws {
        root = NSTemporaryDirectory() + "securepath-\(UUID().uuidString)"
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/usr/lib", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: root + "/escape", withDestinationPath: "/etc")
        try fm.createSymbolicLink(atPath: root + "/up", withDestinationPath: "../../../../")
        try fm.createSymbolicLink(atPath: root + "/lib", withDestinationPath: "usr/lib")
        try fm.createSymbolicLink(atPath: root + "/loop", withDestinationPath: "loop")
    }

    @Test func plainPaths() throws {
        #expect(try SecurePath.join(root: root, "/etc/hosts") == root + "/etc/hosts")
        #expect(try SecurePath.join(root: root, "etc//./hosts") == root + "/etc/hosts")
        #expect(try SecurePath.join(root: root, "/") == root)
    }

    @Test func dotDotStopsAtTheRoot() throws {
        #expect(try SecurePath.join(root: root, "/../../etc/passwd") == root + "/etc/passwd")
    }

    @Test func absoluteSymlinksResolveInsideTheRoot() throws {
        #expect(try SecurePath.join(root: root, "/escape/shadow") == root + "/etc/shadow")
        #expect(try SecurePath.join(root: root, "/up/etc") == root + "/etc")
    }

    @Test func relativeSymlinks() throws {
        #expect(try SecurePath.join(root: root, "/lib/x.so") == root + "/usr/lib/x.so")
    }

    @Test func symlinkLoopsAreAnError() {
        #expect(throws: LinuxContainerError.self) { try SecurePath.join(root: root, "/loop/x") }
    }
}

@Suite struct MountOptionsTests {
    @Test func flagsPropagationAndData() {
        let o = MountOptions(["nosuid", "noexec", "nodev", "mode=755", "size=65536k", "rprivate", "ro"])
        #expect(o.flags == UInt(MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY))
        #expect(o.propagation == [UInt(MS_PRIVATE | MS_REC)])
        #expect(o.dataString == "mode=755,size=65536k")
        #expect(o.isReadOnly)
        #expect(!o.isBind)
    }

    @Test func laterOptionsWin() {
        #expect(!MountOptions(["ro", "rw"]).isReadOnly)
        #expect(MountOptions(["rbind"]).isRecursiveBind)
        #expect(MountOptions(["bind"]).isBind && !MountOptions(["bind"]).isRecursiveBind)
    }
}

/**
 * The SDK's time-skipping test environment, for the workflow tests that would otherwise sleep in real time
 * (a gate that expires, a canary's holds, a wait that must not end by itself). The SDK would download its test
 * server from a release page, which this project's machines cannot reach; the same server is published on
 * Maven Central as the Java SDK's `io.temporal:temporal-test-server`, so Maven resolves it (once, into
 * ~/.m2) and a small wrapper in the cache directory runs it with Java, given to the SDK as an existing
 * executable. Java and Maven are part of the machine; nothing else is fetched.
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { cfg } from '../support';

/** The Java SDK release whose test server runs the tests (Maven Central's newest when this was written). */
const TEST_SERVER_VERSION = '1.38.0';
/** slf4j binding for the server's logging API: without one it prints a warning at every start. */
const SLF4J_VERSION = '1.7.36';

const execFileAsync = promisify(execFile);

function pom(): string {
  const dep = (g: string, a: string, v: string) => `<dependency><groupId>${g}</groupId><artifactId>${a}</artifactId><version>${v}</version></dependency>`;
  return `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tempered.tests</groupId><artifactId>temporal-test-server-runner</artifactId><version>1</version>
  <dependencies>
    ${dep('io.temporal', 'temporal-test-server', TEST_SERVER_VERSION)}
    ${dep('org.slf4j', 'slf4j-nop', SLF4J_VERSION)}
  </dependencies>
</project>
`;
}

/** The path of an executable that starts the test server (`<executable> <port>`), resolved with Maven on first use. */
export async function testServerExecutable(): Promise<string> {
  const dir = path.join(cfg.cacheDir, 'temporal-test-server', TEST_SERVER_VERSION);
  const executable = path.join(dir, 'test-server');
  const classpathFile = path.join(dir, 'classpath.txt');
  const ready = () => existsSync(executable) && existsSync(classpathFile) && readFileSync(classpathFile, 'utf8').trim().split(':').every((jar) => existsSync(jar));
  if (ready()) return executable;

  await execFileAsync('java', ['-version']).catch(() => {
    throw new Error('java is not installed: the time-skipping tests run the Java SDK\'s test server (apt-get install default-jre-headless)');
  });
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'pom.xml'), pom()); // the same text from every process
  try {
    // Into a file of this process first: two test files resolving at once must not read half a classpath.
    await execFileAsync('mvn', ['-q', '-B', '-f', path.join(dir, 'pom.xml'), 'dependency:build-classpath', `-Dmdep.outputFile=${classpathFile}.${process.pid}`], { timeout: 10 * 60_000, maxBuffer: 16 << 20 });
    renameSync(`${classpathFile}.${process.pid}`, classpathFile);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    const why = e.code === 'ENOENT' ? 'mvn is not installed (apt-get install maven)' : `${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`;
    throw new Error(`could not resolve io.temporal:temporal-test-server:${TEST_SERVER_VERSION} from Maven Central for the time-skipping tests: ${why}`);
  }
  const classpath = readFileSync(classpathFile, 'utf8').trim();
  // exec, so that the SDK's stop signal reaches the JVM itself. C1 only and the serial collector: a test
  // server starts in about a second on two cores and needs no peak throughput.
  const script = `#!/bin/sh\nexec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx512m -cp '${classpath}' io.temporal.testserver.TestServer "$@"\n`;
  writeFileSync(`${executable}.${process.pid}`, script);
  chmodSync(`${executable}.${process.pid}`, 0o755);
  renameSync(`${executable}.${process.pid}`, executable);
  return executable;
}

/**
 * A fresh time-skipping environment: its client's `result()` skips time while the workflow only waits. The SDK
 * gives the server a fixed 5 s to answer, which a JVM starting on two busy cores can miss: a start that timed
 * out is tried again (the SDK stops the process it started).
 */
export async function timeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  const executable = await testServerExecutable();
  for (let attempt = 1; ; attempt++) {
    try {
      return await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: executable } } });
    } catch (err) {
      if (attempt >= 3 || !/did not start within/.test(String(err))) throw err;
    }
  }
}

// The pure halves of the real engine: what it makes of lscpu, /proc/meminfo, df, os-release,
// mountinfo and dpkg-query output, and the QMP client against a scripted QMP server.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { cgroup2MountOf, makeSandboxCgroup } from '../../src/engines/real/cgroups.js';
import {
  parseDf,
  parseLscpu,
  parseMeminfo,
  parseOsRelease,
} from '../../src/engines/real/host-facts.js';
import { QmpClient } from '../../src/engines/real/qmp-client.js';
import { inventoryOf } from '../../src/engines/real/sandbox-driver.js';
import { isVfleetError } from '../../src/model/errors.js';
import { LocalTransport } from '../../src/transport/local-transport.js';

describe('host fact parsers', () => {
  it('lscpu -J: topology, nested fields, missing ones count as 1', () => {
    const lscpu = (fields: Array<[string, string]>) =>
      JSON.stringify({
        lscpu: [
          { field: 'Architecture:', data: 'x86_64' },
          {
            field: 'Vendor ID:',
            data: 'AuthenticAMD',
            children: fields.map(([field, data]) => ({ field, data })),
          },
        ],
      });
    assert.deepEqual(
      parseLscpu(
        lscpu([
          ['Thread(s) per core:', '2'],
          ['Core(s) per socket:', '16'],
          ['Socket(s):', '2'],
        ]),
      ),
      { sockets: 2, coresPerSocket: 16, threadsPerCore: 2 },
    );
    assert.deepEqual(parseLscpu(lscpu([['Core(s) per socket:', '4']])), {
      sockets: 1,
      coresPerSocket: 4,
      threadsPerCore: 1,
    });
  });

  it('/proc/meminfo and df -P -k', () => {
    assert.equal(parseMeminfo('MemTotal:       24684032 kB\nMemFree: 1 kB\n'), 24105);
    assert.equal(
      parseDf(
        'Filesystem     1024-blocks      Used Available Capacity Mounted on\n/dev/vda  263174212 1 2 1% /\n',
      ),
      250,
    );
  });

  it('os-release: ID, else the first known ID_LIKE; quotes removed', () => {
    const cases: Array<[string, string, { family: string; release: string }]> = [
      ['debian', 'ID=debian\nVERSION_ID="12"\n', { family: 'debian', release: '12' }],
      [
        'a derivative',
        'ID=linuxmint\nID_LIKE="ubuntu debian"\nVERSION_ID="21.3"\n',
        { family: 'ubuntu', release: '21.3' },
      ],
      [
        'rocky',
        "ID='rocky'\nID_LIKE='rhel centos fedora'\nVERSION_ID='9.4'",
        { family: 'rocky', release: '9.4' },
      ],
      ['unknown as named', 'ID=nixos\nVERSION_ID=24.05', { family: 'nixos', release: '24.05' }],
    ];
    for (const [name, text, expected] of cases)
      assert.deepEqual(parseOsRelease(text), expected, name);
  });

  it('mountinfo: the cgroup2 mount point, octal escapes decoded', () => {
    const v1 = '35 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory';
    const unified =
      '34 25 0:29 / /sys/fs/cgroup/unified rw,relatime shared:11 - cgroup2 cgroup2 rw';
    const spaced = '34 25 0:29 / /mnt/cg\\040two rw - cgroup2 none rw';
    assert.equal(cgroup2MountOf([v1, unified].join('\n')), '/sys/fs/cgroup/unified');
    assert.equal(cgroup2MountOf(spaced), '/mnt/cg two');
    assert.equal(cgroup2MountOf(v1), undefined);
  });

  it('dpkg-query output: installed packages only; a bad line is an error', () => {
    const out = [
      'installed\tbusybox-static\t1:1.35.0-4+deb12u1+b1',
      'config-files\told-thing\t1.0-1',
      'installed\tlibc6:amd64\t2.36-9+deb12u10',
      '',
    ].join('\n');
    assert.deepEqual(inventoryOf(out, 'h:/x'), {
      'busybox-static': '1:1.35.0-4+deb12u1+b1',
      'libc6:amd64': '2.36-9+deb12u10',
    });
    assert.throws(
      () => inventoryOf('installed\tNOT A NAME\t1\n', 'h:/x'),
      (e) => isVfleetError(e) && e.code === 'inventory-invalid',
    );
  });
});

describe('sandbox cgroup limits', () => {
  // This machine's cgroup v2 has neither memory nor cpu (they stay on v1), so the writes are
  // checked against a folder standing in for a cgroup v2 tree that has them.
  it('enables the controllers down the path and writes memory.max and cpu.max', async () => {
    const mount = mkdtempSync(`${tmpdir()}/vfleet-cgroup-`);
    try {
      const leaf = `${mount}/vfleet/h1/box-0`;
      mkdirSync(leaf, { recursive: true });
      for (const dir of [mount, `${mount}/vfleet`, `${mount}/vfleet/h1`]) {
        writeFileSync(`${dir}/cgroup.subtree_control`, '');
      }
      writeFileSync(`${leaf}/memory.max`, 'max');
      writeFileSync(`${leaf}/cpu.max`, 'max 100000');
      const made = await makeSandboxCgroup(
        new LocalTransport('h1'),
        { mount, controllers: ['cpuset', 'cpu', 'io', 'memory', 'pids'] },
        'h1',
        'box-0',
        { memoryMiB: 256, vcpus: 2 },
      );
      assert.deepEqual(made, { path: leaf, memory: true, cpu: true });
      assert.equal(readFileSync(`${leaf}/memory.max`, 'utf8'), String(256 * 1024 * 1024));
      assert.equal(readFileSync(`${leaf}/cpu.max`, 'utf8'), '200000 100000');
      // (a real cgroupfs takes one "+controller" per write; a plain file keeps the last)
      assert.equal(readFileSync(`${mount}/vfleet/cgroup.subtree_control`, 'utf8'), '+cpu');
    } finally {
      rmSync(mount, { recursive: true, force: true });
    }
  });

  it('says what is not enforced where the controllers are missing', async () => {
    const mount = mkdtempSync(`${tmpdir()}/vfleet-cgroup-`);
    try {
      const made = await makeSandboxCgroup(
        new LocalTransport('h1'),
        { mount, controllers: ['hugetlb'] },
        'h1',
        'box-0',
        { memoryMiB: 256, vcpus: 2 },
      );
      assert.equal(made?.memory, false);
      assert.equal(made?.cpu, false);
      assert.match(made?.note ?? '', /offers hugetlb; not enforced: memory, cpu/);
    } finally {
      rmSync(mount, { recursive: true, force: true });
    }
  });
});

describe('QMP client', () => {
  /** A QMP server that greets, negotiates, sends events in between, and answers by script. */
  async function withServer(
    answer: (command: string, socket: Socket, id: unknown) => void,
    body: (path: string) => Promise<void>,
  ) {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-qmp-`);
    const path = `${dir}/qmp.sock`;
    const server = createServer((socket) => {
      socket.write('{"QMP": {"version": {}, "capabilities": []}}\r\n');
      let buffer = '';
      socket.on('data', (chunk) => {
        buffer += chunk.toString();
        for (let i = buffer.indexOf('\n'); i !== -1; i = buffer.indexOf('\n')) {
          const message = JSON.parse(buffer.slice(0, i)) as { execute: string; id: unknown };
          buffer = buffer.slice(i + 1);
          socket.write('{"event": "RTC_CHANGE", "data": {}}\r\n');
          if (message.execute === 'qmp_capabilities') {
            socket.write(`${JSON.stringify({ return: {}, id: message.id })}\r\n`);
          } else {
            answer(message.execute, socket, message.id);
          }
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      await body(path);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('matches answers to commands by id, skipping events', async () => {
    await withServer(
      (command, socket, id) => {
        if (command === 'query-status') {
          socket.write(
            `${JSON.stringify({ return: { status: 'running', running: true }, id })}\r\n`,
          );
        } else {
          socket.write(
            `${JSON.stringify({ error: { class: 'CommandNotFound', desc: `no ${command}` }, id })}\r\n`,
          );
        }
      },
      async (path) => {
        const client = await QmpClient.connect(new LocalTransport('qmp'), path, 2_000);
        try {
          assert.deepEqual(await client.execute('query-status'), {
            status: 'running',
            running: true,
          });
          await assert.rejects(
            client.execute('bogus'),
            (e) => isVfleetError(e) && e.code === 'qmp-error' && /CommandNotFound/.test(e.message),
          );
        } finally {
          client.close();
        }
      },
    );
  });

  it('a silent server is a retryable timeout, a missing socket a retryable unavailability', async () => {
    await withServer(
      () => undefined,
      async (path) => {
        const client = await QmpClient.connect(new LocalTransport('qmp'), path, 200);
        try {
          await assert.rejects(
            client.execute('query-status'),
            (e) => isVfleetError(e) && e.code === 'qmp-timeout' && e.retryable,
          );
        } finally {
          client.close();
        }
      },
    );
    await assert.rejects(
      QmpClient.connect(new LocalTransport('qmp'), `${tmpdir()}/no-such-qmp.sock`, 200),
      (e) => isVfleetError(e) && e.code === 'qmp-unavailable' && e.retryable,
    );
  });
});

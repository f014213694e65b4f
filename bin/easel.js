#!/usr/bin/env node
// Entry point of the `easel` command (and of `npm start`), in plain JavaScript so that any Node can
// read it. The CLI itself is TypeScript run by Node's type stripping, which needs Node 22.18+ (or
// 23.6+): an older Node stops on bin/easel.ts with ERR_UNKNOWN_FILE_EXTENSION and a stack trace.
const [major, minor] = process.versions.node.split('.').map(Number);
const supported = major > 23 || (major === 23 && minor >= 6) || (major === 22 && minor >= 18);
if (!supported) {
  process.stderr.write(
    `easel needs Node.js 22.18 or newer (24 LTS recommended), this is Node ${process.versions.node}: ` +
      'install it from https://nodejs.org/en/download (or `nvm install 24`) and run the command again.\n',
  );
  process.exit(1);
}
await import('./easel.ts');

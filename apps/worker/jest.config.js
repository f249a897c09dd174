// Unit specs only (src/**/*.spec.ts); the full-stack tests live in tests/system.
module.exports = { ...require('../../jest.base.js')(__dirname), passWithNoTests: true };

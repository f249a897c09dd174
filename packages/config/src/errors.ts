/** A config file that cannot be used. The message names the file, the key path, what was expected and what was found. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

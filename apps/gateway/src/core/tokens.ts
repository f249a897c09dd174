// Injection tokens for values that are not classes.
export const CONFIG = Symbol('ShepherdConfig');
export const STORAGE = Symbol('JobStorage');
export const REDIS = Symbol('Redis');
export const SUBSCRIBER = Symbol('RedisSubscriber');

export * from './s3-server';
export * from './names';
export * from './redis';
export * from './wait';
export * from './docker';
export * from './stand-ins';

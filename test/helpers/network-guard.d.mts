// Types of network-guard.mjs (plain JavaScript so that worker threads can load it).
export declare const ROUTE_ENV: string;
export declare const GUARD_EXIT_CODE: number;
export declare function emulatorAddressOnLoopback(address: string): string | undefined;
export declare function routeEmulatorAddresses(): () => void;
export declare function recordRefusals(): void;
export declare function takeRefusals(): string[];

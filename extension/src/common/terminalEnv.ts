// Every integrated terminal gets the daemon's hub address and token (DEEPDIVE_HUB), through VS Code's
// environment-variable collection: `deepdive train` or `python train.py` typed in a terminal then
// streams to the sidebar dashboard and appears in the Jobs view. The token is new at each daemon
// start, so the collection is not persisted and is replaced whenever the daemon (re)starts.
import type { Disposable, EnvironmentVariableCollection } from 'vscode';
import type { HubInfo } from '../protocol';

export const HUB_VARIABLE = 'DEEPDIVE_HUB';

/** What the terminals get for this hub: DEEPDIVE_HUB, or nothing when the hub is not running. */
export function terminalVariables(info: HubInfo | undefined): Record<string, string> {
    return info?.running && info.ingestUrl ? { [HUB_VARIABLE]: info.ingestUrl } : {};
}

/** The collection's description (VS Code shows it where it lists what extensions add to terminals). */
export function terminalDescription(info: HubInfo | undefined): string {
    return info?.running && info.ingestUrl
        ? 'Deepdive: DEEPDIVE_HUB (with this session\'s token) — training runs started in this terminal report to the editor\'s dashboard and Jobs view'
        : 'Deepdive: the telemetry hub is not running; terminals get no DEEPDIVE_HUB';
}

/** Applies the hub's variables to the collection (replacing an earlier daemon's). */
export function applyTerminalEnvironment(collection: EnvironmentVariableCollection, info: HubInfo | undefined): void {
    collection.persistent = false;
    collection.clear();
    for (const [name, value] of Object.entries(terminalVariables(info))) {
        collection.replace(name, value);
    }
    collection.description = terminalDescription(info);
}

/** Keeps the collection in step with the daemon: set on `ready`, cleared when it stops. */
export function syncTerminalEnvironment(
    collection: EnvironmentVariableCollection,
    onReady: (listener: (ready: boolean) => void) => Disposable,
    hub: () => Promise<HubInfo>,
    log: (message: string) => void,
): Disposable {
    return onReady(ready => {
        if (!ready) {
            applyTerminalEnvironment(collection, undefined);
            return;
        }
        hub().then(
            info => {
                applyTerminalEnvironment(collection, info);
                log(info.running ? 'integrated terminals get DEEPDIVE_HUB (new terminals; existing ones show a relaunch hint)'
                    : `terminals get no DEEPDIVE_HUB: ${info.reason ?? 'the hub is not running'}`);
            },
            (err: unknown) => log(`terminals get no DEEPDIVE_HUB: ${err instanceof Error ? err.message : String(err)}`),
        );
    });
}

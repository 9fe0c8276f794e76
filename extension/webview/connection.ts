/// <reference lib="dom" />
// The dashboard's connection to the hub's /stream websocket: it reconnects by itself with backoff
// (model.ts says how long), hands each JSON message to the page, and shows its state in #conn
// ("connected", "reconnecting in 3 s: code 1006", ...).
import { backoffDelay, connectionLabel, streamUrl, type Config, type ConnState } from './model';
import { $ } from './dom';

declare global {
    interface Window {
        DEEPDIVE_CONFIG?: Config;
    }
}

/** What the page does when the stream opens, brings a message, or closes. */
export interface StreamHandlers {
    /** Something to draw changed (the connection's state, at least). */
    schedule: () => void;
    opened: () => void;
    /** One message, parsed from JSON; frames that are not JSON text are dropped here. */
    message: (msg: unknown) => void;
    closed: () => void;
}

export class Connection {
    state: ConnState = 'connecting';
    /** How many times the stream opened (1 + reconnects). */
    opens = 0;
    private ws: WebSocket | null = null;
    private attempt = 0;
    private lastError: string | null = null;
    private retryAt = 0;

    constructor(private readonly on: StreamHandlers) {}

    connect(): void {
        const url = streamUrl(window.location, window.DEEPDIVE_CONFIG);
        this.state = this.attempt === 0 ? 'connecting' : 'reconnecting';
        this.on.schedule();
        let socket: WebSocket;
        try {
            socket = new WebSocket(url);
        } catch (e) {
            this.lastError = String(e);
            this.retry();
            return;
        }
        this.ws = socket;
        socket.onopen = () => {
            this.opens++;
            this.attempt = 0;
            this.state = 'open';
            this.lastError = null;
            this.on.schedule();
            this.on.opened();
        };
        socket.onmessage = ev => {
            if (typeof ev.data !== 'string') {
                return;
            }
            let msg: unknown;
            try {
                msg = JSON.parse(ev.data);
            } catch {
                return;
            }
            this.on.message(msg);
        };
        socket.onclose = ev => {
            if (this.ws !== socket) {
                return;
            }
            this.ws = null;
            this.on.closed();
            this.lastError = ev.code === 1000 ? null : `code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''}`;
            this.retry();
        };
    }

    /** Sends `text` when the stream is open; false when it is not. */
    send(text: string): boolean {
        if (this.ws && this.ws.readyState === WebSocket.OPEN) {
            this.ws.send(text);
            return true;
        }
        return false;
    }

    /** Closes the websocket as if the network dropped it (the page must reconnect by itself). */
    drop(): void {
        this.ws?.close(4000, 'dropped by test hook');
    }

    render(): void {
        const el = $('conn');
        el.dataset.state = this.state;
        el.textContent = connectionLabel(this.state, this.state === 'reconnecting' ? Math.max(0, this.retryAt - Date.now()) : null, this.lastError);
    }

    private retry(): void {
        const delay = backoffDelay(this.attempt++);
        this.state = 'reconnecting';
        this.retryAt = Date.now() + delay;
        setTimeout(() => this.connect(), delay);
        this.on.schedule();
    }
}

// `${workspaceFolder}` and `${userHome}` in settings are resolved here, on the client side, before the
// value is used. The daemon receives only resolved paths. No `vscode` import: unit tests load this.

export interface VariableContext {
    /** fsPath of the first workspace folder; undefined when no folder is open. */
    workspaceFolder?: string;
    userHome: string;
}

/**
 * Replace `${workspaceFolder}` and `${userHome}` in a setting's value. A variable that cannot be
 * resolved (no folder open) is left as written, so the error that follows names it.
 */
export function resolveVariables(value: string, ctx: VariableContext): string {
    return value.replace(/\$\{(workspaceFolder|userHome)\}/g, (whole, name: string) => {
        if (name === 'userHome') {
            return ctx.userHome;
        }
        return ctx.workspaceFolder ?? whole;
    });
}

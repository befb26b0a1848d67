import type { ReactNode } from "react";
import { onLinkClick } from "../router";

export function Link({ to, children, ...rest }: { to: string; children: ReactNode; title?: string; className?: string; "data-testid"?: string }) {
  return (
    <a href={to} onClick={onLinkClick} {...rest}>
      {children}
    </a>
  );
}
